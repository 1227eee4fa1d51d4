"""The evolution round loop, as published (WizardLM section 3; WizardCoder section 3.1).

Each round, every instruction in the pool is evolved once with a heuristic drawn per record and
round, the evolved instruction is answered by the same LLM, and the elimination filters judge the
pair. A passing evolution replaces its parent in the pool; a failing one is recorded with its
reasons and its parent goes back into the pool unchanged. Every attempt is kept.

Requests go through `RequestRunner`, which answers from the durable request cache when it can and
stores each new answer before it is used, so an interrupted run never pays twice.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from evolinstruct.llm.backends import Backend, Completion, Sampling
from evolinstruct.llm.batching import run_batches
from evolinstruct.llm.cost import BudgetExhausted, Price
from evolinstruct.llm.dispatch import Control, estimate_tokens
from evolinstruct.core.errors import EvolError
from evolinstruct.evolve.filters import Candidate, Filter
from evolinstruct.evolve.heuristics import Heuristic, draw
from evolinstruct.core.progress import Progress
from evolinstruct.core.records import Record, Rejection, evolved_record
from evolinstruct.llm.request_cache import RequestCache, request_key


@dataclass
class RoundStats:
    round: int
    attempted: int = 0
    kept: int = 0
    eliminated: int = 0
    failed: int = 0
    requests_sent: int = 0
    cache_hits: int = 0
    retries: int = 0
    request_failures: int = 0
    batch_requests: int = 0
    budget_refused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: USD paid for the requests sent in this run (cache hits cost nothing); 0 without a price.
    cost_usd: float = 0.0
    rejections: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        return data


@dataclass(frozen=True)
class Failure:
    """A request that got no answer; its record is marked failed with this reason."""

    reason: str


class BudgetReached(EvolError):
    """The budget cap stopped the run; everything answered so far is cached."""


class RequestRunner:
    """Answers prompts from the cache or the backend, caching every new answer before use.

    Identical prompts in one call are paid for once. New requests go through the backend's
    `complete_many` (online) or the provider's batch API (`evolver.mode: batch`, with per-request
    fallback for whatever a batch did not answer), under the rate limits, retries and budget of
    `control`.
    """

    def __init__(self, backend: Backend, cache: RequestCache, sampling: Sampling,
                 control: Control | None = None, price: Price | None = None) -> None:
        self.backend, self.cache, self.sampling = backend, cache, sampling
        self.model = backend.config.model
        self.control = control or backend.control()
        self.price = price
        self.batch = backend.config.mode == "batch"

    async def run(self, label: str, prompts: Sequence[str], sample: int, stats: RoundStats) -> list[Completion | Failure]:
        keys = [request_key(self.backend.name, self.model, self.sampling, p, sample) for p in prompts]
        results: dict[str, Completion | Failure] = {}
        for key in dict.fromkeys(keys):
            hit = self.cache.get(key)
            if hit is not None:
                results[key] = hit
        hits = sum(1 for k in keys if k in results)
        stats.cache_hits += hits
        prompt_of = dict(zip(keys, prompts, strict=True))
        todo = {k: prompt_of[k] for k in dict.fromkeys(keys) if k not in results}
        copies = Counter(keys)  # how many prompts each request answers (identical prompts share one)
        progress = Progress(label, len(keys))
        progress.done = hits
        progress.add("cache hits", hits)

        def answered(key: str, completion: Completion, discount: float = 1.0) -> None:
            self.cache.put(key, self.backend.name, self.model, completion)
            results[key] = completion
            stats.requests_sent += 1
            stats.prompt_tokens += completion.prompt_tokens
            stats.completion_tokens += completion.completion_tokens
            if self.price:
                stats.cost_usd += self.price.cost(completion.prompt_tokens, completion.completion_tokens) * discount
            progress.advance(copies[key])

        def failed(key: str, error: BaseException) -> None:
            results[key] = Failure(f"{type(error).__name__}: {error}"[:500])
            if isinstance(error, BudgetExhausted):
                stats.budget_refused += 1
                progress.add("not sent (budget)")
            else:
                stats.requests_sent += 1
                stats.request_failures += 1
                progress.add("failed")
            progress.advance(copies[key])

        def retried(error: BaseException) -> None:
            stats.retries += 1
            progress.add("retries")

        control = dataclasses.replace(self.control, on_retry=retried)
        if todo and self.batch and self.backend.supports_batch:
            discount = self.backend.config.batch_discount

            def batch_answer(key: str, completion: Completion) -> None:
                stats.batch_requests += 1
                answered(key, completion, discount)

            leftovers = await run_batches(self.backend, self.cache, todo, self.sampling, batch_answer, progress,
                                          admit=self._admit_batch(todo, failed))
            todo = {k: todo[k] for k in leftovers}
        if todo:
            order = list(todo)

            def on_done(index: int, outcome: Completion | BaseException) -> None:
                if isinstance(outcome, Completion):
                    answered(order[index], outcome)
                else:
                    failed(order[index], outcome)

            await self.backend.complete_many([todo[k] for k in order], self.sampling, on_done, control)
        elif not keys or hits == len(keys):
            progress.emit()
        return [results[k] for k in keys]

    def _admit_batch(self, todo: Mapping[str, str], failed: Callable[[str, BaseException], None]):
        """Hold back, in order, the batch requests whose worst-case cost would pass the budget."""
        budget = self.control.budget

        def admit(keys: list[str]) -> list[str]:
            if budget is None:
                return keys
            admitted = []
            for key in keys:
                # The reservation is kept for the rest of the run: a conservative upper bound,
                # since batch answers are only charged when the batch ends.
                try:
                    budget.reserve(estimate_tokens(todo[key]), self.sampling.max_tokens)
                except BudgetExhausted as exc:
                    failed(key, exc)
                    continue
                admitted.append(key)
            return admitted

        return admit


async def evolve_round(
    pool: Sequence[Record],
    round: int,
    heuristics: Sequence[Heuristic],
    weights: Mapping[str, float],
    seed: int,
    runner: RequestRunner,
    filters: Sequence[Filter],
) -> tuple[list[Record], list[Record], RoundStats]:
    """Run one round over `pool`. Returns (every attempt, the next pool, the round's stats)."""
    stats = RoundStats(round=round, attempted=len(pool))
    backend, model = runner.backend.name, runner.model
    drawn = [draw(heuristics, weights, seed, parent.id, round) for parent in pool]

    evolutions = await runner.run(
        f"round {round} evolve", [h.render(p.instruction) for h, p in zip(drawn, pool, strict=True)], round, stats
    )
    instructions = [e.text.strip() if isinstance(e, Completion) else "" for e in evolutions]
    answerable = [i for i, e in enumerate(evolutions) if isinstance(e, Completion) and instructions[i]]
    answers_list = await runner.run(f"round {round} answer", [instructions[i] for i in answerable], round, stats)
    answers: dict[int, Completion | Failure] = dict(zip(answerable, answers_list, strict=True))

    # Rule filters first: the LLM judge is only paid for evolutions that pass every free rule.
    rejections: dict[int, list[Rejection]] = {}
    candidates: dict[int, Candidate] = {}
    questions: dict[tuple[int, int], str] = {}  # (filter index, candidate index) -> judge prompt
    for i, answer in answers.items():
        if isinstance(answer, Completion):
            candidates[i] = Candidate(pool[i].instruction, instructions[i], answer.text.strip(), answer.finish_reason)
            rejections[i] = []
            for n, f in enumerate(filters):
                question = f.judge_prompt(candidates[i])
                if question is not None:
                    questions[n, i] = question
                elif rejection := f.check(candidates[i], None):
                    rejections[i].append(rejection)
    for n, f in enumerate(filters):
        asked = [i for i in candidates if (n, i) in questions and not rejections[i]]
        if not asked:
            continue
        verdicts = await runner.run(f"round {round} judge:{f.name}", [questions[n, i] for i in asked], round, stats)
        for i, verdict in zip(asked, verdicts, strict=True):
            if isinstance(verdict, Failure):
                answers[i] = verdict  # the judge never answered: the evolution failed, not eliminated
                continue
            rejection = f.check(candidates[i], verdict.text)
            if rejection:
                rejections[i].append(rejection)

    attempts: list[Record] = []
    next_pool: list[Record] = []
    for i, parent in enumerate(pool):
        outcome = evolutions[i] if isinstance(evolutions[i], Failure) else answers.get(i)
        response = outcome.text.strip() if isinstance(outcome, Completion) else ""
        if outcome is None:
            status, reasons = "failed", [Rejection("empty_evolution", "the evolver returned an empty instruction")]
        elif isinstance(outcome, Failure):
            status, reasons = "failed", [Rejection("request_failed", outcome.reason)]
        elif rejections.get(i):
            status, reasons = "eliminated", rejections[i]
        else:
            status, reasons = "kept", []
        record = evolved_record(parent, round, drawn[i].name, instructions[i], response, backend, model, status, reasons)
        attempts.append(record)
        next_pool.append(record if status == "kept" else parent)
        setattr(stats, status, getattr(stats, status) + 1)
        for reason in reasons:
            stats.rejections[reason.rule] = stats.rejections.get(reason.rule, 0) + 1
    return attempts, next_pool, stats
