"""The evolution round loop, as published (WizardLM section 3; WizardCoder section 3.1), run as a
stream of records.

Each round, every instruction in the pool is evolved once with a heuristic drawn per record and
round, the evolved instruction is answered by the same LLM, and the elimination filters judge the
pair. A passing evolution replaces its parent in the pool; a failing one is recorded with its
reasons and its parent goes back into the pool unchanged. Every attempt is kept.

A record's rounds depend only on that record's earlier rounds, so each record flows through
evolve, answer and judge, then into its next round, on its own (`Evolver.run`): a slow or hung
request delays only its record, never a whole phase. Every request of the run shares one
concurrency bound, rate limiter, budget and breaker (`dispatch.Sender`). Outputs do not depend on
the order in which requests complete: attempts are placed by (round, pool position).

Batch mode and local backends that batch on the device (`complete_many` overridden) keep phases:
a `_Phases` collector gathers the requests of every record of a round and sends them together
once every record is waiting, which is what a provider batch or a device batch needs.

Requests go through `RequestRunner`, which answers from the durable request cache when it can and
stores each new answer before it is used, so an interrupted run never pays twice.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

from evolinstruct.core.errors import EvolError
from evolinstruct.core.plugin_code import plugin_code, plugin_name
from evolinstruct.core.progress import EvolveProgress
from evolinstruct.core.records import Record, Rejection, evolved_record
from evolinstruct.evolve.filters import Candidate, Filter
from evolinstruct.evolve.heuristics import Heuristic, draw
from evolinstruct.evolve.plugin_pool import CheckTimedOut, PluginPool, runs_in
from evolinstruct.llm.backends import Backend, Completion, RequestInfo, Sampling, _current_request
from evolinstruct.llm.batching import run_batches
from evolinstruct.llm.cost import BudgetExhausted, Price
from evolinstruct.llm.dispatch import Control, FatalRequestError, Sender, Stopped, estimate_tokens
from evolinstruct.llm.request_cache import RequestCache, model_identity, request_key


@dataclass
class RoundStats:
    round: int
    #: Records that entered the round (the pool), and what became of them.
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
    hedged: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Tokens of every answer the round's output used, sent in this run or read from the cache.
    output_prompt_tokens: int = 0
    output_completion_tokens: int = 0
    #: USD paid for the requests sent in this run (cache hits cost nothing); 0 without a price.
    cost_usd: float = 0.0
    #: USD that producing the round's output took, whether paid now or earlier (cached answers
    #: priced at their recorded tokens); 0 without a price.
    output_cost_usd: float = 0.0
    #: Evolutions whose text began with echoed prompt scaffolding ("#Rewritten Prompt#:"), stripped.
    scaffolding_stripped: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    #: Filter calls that ran past `evolve.check_timeout`, by plugin object (named with its plugin).
    check_timeouts: dict[str, int] = field(default_factory=dict)

    @property
    def returned_to_pool(self) -> int:
        """Parents that go back into the pool: their evolution was eliminated or failed."""
        return self.eliminated + self.failed

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        data["output_cost_usd"] = round(self.output_cost_usd, 6)
        data["returned_to_pool"] = self.returned_to_pool
        return data


@dataclass(frozen=True)
class Failure:
    """A request that got no answer; its record is marked failed with this reason."""

    reason: str


#: The rule of a record eliminated because a filter call ran past `evolve.check_timeout`.
CHECK_TIMEOUT = "check_timeout"


class BudgetReached(EvolError):
    """The budget cap stopped the run; everything answered so far is cached."""


#: Scaffolding a model may echo before the evolved instruction: a label such as "#Rewritten Prompt#:",
#: "Rewritten Test:", "**New Prompt:**" on its own or at the start of the first line.
_SCAFFOLD = re.compile(
    r"\A\s*(?:\*\*|#+\s*)?(?:the\s+)?(?:rewritten|created|new|revised|evolved|modified|updated|given)\s+"
    r"(?:programming\s+)?(?:test\s+)?(?:prompt|test|question|problem|instruction|task)"
    r"\s*(?:#\s*:?|:)\s*(?:\*\*)?[ \t]*\n?",
    re.IGNORECASE,
)


def strip_scaffolding(text: str) -> tuple[str, bool]:
    """The evolved instruction without echoed prompt scaffolding, and whether any was removed.

    Runs before the filters, so an evolution that is fine apart from a leading label is not
    eliminated by the copied-words rule (which still catches the words anywhere else)."""
    text = text.strip()
    match = _SCAFFOLD.match(text)
    if not match:
        return text, False
    return text[match.end():].strip(), True


#: `ask(prompt, kind)`: the answer to one request of a record ("evolve", "answer" or "judge:<filter>").
Ask = Callable[[str, str], Awaitable["Completion | Failure"]]


def request_info(kind: str, round: int) -> RequestInfo:
    """What `current_request()` tells a backend about a request of kind "evolve", "answer" or "judge:<filter>"."""
    name, _, filter_name = kind.partition(":")
    return RequestInfo(name, round, filter_name or None)


#: Set per record by the round loop: whether any of the record's requests was sent (or waited on a
#: request in flight) rather than answered from the cache, so the progress line's ETA counts only
#: records whose pace says something about the records still to come.
_record_paid: ContextVar[list[bool] | None] = ContextVar("evolinstruct_record_paid", default=None)


def _mark_paid() -> None:
    flag = _record_paid.get()
    if flag is not None:
        flag[0] = True


class RequestRunner:
    """Answers prompts from the cache or the backend, caching every new answer before use.

    `ask` answers one prompt (identical prompts in flight at once are paid for once); `run`
    answers a list (a phase), through the provider's batch API in `evolver.mode: batch` (with
    per-request fallback for whatever a batch did not answer) or the backend's own
    `complete_many` for local backends. Every request of a run shares one `Sender`: one
    concurrency bound, rate limiter, budget and breaker.
    """

    def __init__(self, backend: Backend, cache: RequestCache, sampling: Sampling,
                 control: Control | None = None, price: Price | None = None,
                 progress: EvolveProgress | None = None, version: str = "") -> None:
        self.backend, self.cache, self.sampling = backend, cache, sampling
        self.model = backend.config.model
        #: What request keys say about the model (a local folder's content hash: computed once per
        #: run, not per request, since hashing reads every file's size and time).
        self.model_identity = model_identity(self.model, backend.config.revision)
        #: The backend plugin's distribution and version (`Registry.version_key`), part of every
        #: request key: a fixed plugin must not be served its old answers.
        self.version = version
        self.control = control or backend.control()
        self.price = price
        self.batch = backend.config.mode == "batch"
        self.progress = progress or EvolveProgress(quiet=True)
        self.sender = Sender(backend, sampling, self.control)
        self.progress.sender = self.sender
        self._pending: dict[str, asyncio.Future] = {}

    @property
    def local(self) -> bool:
        """True for backends that batch on their own device (they override `complete_many`)."""
        return type(self.backend).complete_many is not Backend.complete_many

    @property
    def phased(self) -> bool:
        """Batch mode and local backends send a round phase by phase; API backends per record."""
        return (self.batch and self.backend.supports_batch) or self.local

    def key(self, prompt: str, sample: int) -> str:
        key = request_key(self.backend.name, self.model_identity, self.sampling, prompt, sample, self.version)
        self.cache.expect(key, sample)  # its answer, once used, is exported with round `sample`
        return key

    def _used(self, stats: RoundStats, completion: Completion) -> None:
        """Count an answer the output uses (sent now or cached) in the output's tokens and cost."""
        stats.output_prompt_tokens += completion.prompt_tokens
        stats.output_completion_tokens += completion.completion_tokens
        if self.price:
            stats.output_cost_usd += self.price.cost(completion.prompt_tokens, completion.completion_tokens)

    def _answered(self, key: str, completion: Completion, stats: RoundStats, discount: float = 1.0) -> None:
        self.cache.put(key, self.backend.name, self.model, completion)
        stats.requests_sent += 1
        stats.prompt_tokens += completion.prompt_tokens
        stats.completion_tokens += completion.completion_tokens
        cost = self.price.cost(completion.prompt_tokens, completion.completion_tokens) * discount if self.price else 0.0
        stats.cost_usd += cost
        self.progress.sent(completion.prompt_tokens + completion.completion_tokens, cost)

    def _failed(self, error: BaseException, stats: RoundStats) -> Failure:
        if isinstance(error, BudgetExhausted):
            stats.budget_refused += 1
        else:
            stats.requests_sent += 1
            stats.request_failures += 1
            self.progress.sent(0, 0.0, failed=True)
        return Failure(f"{type(error).__name__}: {error}"[:500])

    def _hit(self, completion: Completion, stats: RoundStats) -> Completion:
        stats.cache_hits += 1
        self.progress.cached()
        self._used(stats, completion)
        return completion

    async def ask(self, prompt: str, sample: int, stats: RoundStats, kind: str = "") -> Completion | Failure:
        """The answer to one prompt: from the cache, from an identical request in flight, or sent.
        `kind` ("evolve", "answer", "judge:<filter>") is what the backend's `current_request()` says."""
        key = self.key(prompt, sample)
        pending = self._pending.get(key)
        if pending is not None:
            _mark_paid()
            result = await asyncio.shield(pending)
            return self._hit(result, stats) if isinstance(result, Completion) else result
        hit = self.cache.get(key)
        if hit is not None:
            return self._hit(hit, stats)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception not retrieved"
        self._pending[key] = future
        _mark_paid()

        def retried(error: BaseException) -> None:
            stats.retries += 1

        def hedged() -> None:  # the losing copy is paid too: its prompt, estimated
            stats.hedged += 1
            stats.cost_usd += self.price.cost(estimate_tokens(prompt), 0) if self.price else 0.0

        token = _current_request.set(request_info(kind, sample)) if kind else None
        try:
            completion = await self.sender.send(prompt, retried, hedged)
        except (FatalRequestError, Stopped, asyncio.CancelledError) as exc:
            future.set_exception(exc if not isinstance(exc, asyncio.CancelledError) else Stopped("cancelled"))
            raise
        except Exception as exc:
            result: Completion | Failure = self._failed(exc, stats)
        else:
            self._answered(key, completion, stats)
            self._used(stats, completion)
            result = completion
        finally:
            del self._pending[key]
            if token is not None:
                _current_request.reset(token)
        future.set_result(result)
        return result

    async def run(self, label: str, prompts: Sequence[str], sample: int, stats: RoundStats) -> list[Completion | Failure]:
        """Answer every prompt (a phase); identical prompts are paid for once."""
        keys = [self.key(p, sample) for p in prompts]
        results: dict[str, Completion | Failure] = {}
        for key in dict.fromkeys(keys):
            hit = self.cache.get(key)
            if hit is not None:
                results[key] = hit
        copies = Counter(keys)  # how many prompts each request answers (identical prompts share one)
        for key, hit in results.items():
            for _ in range(copies[key]):
                self._hit(hit, stats)  # type: ignore[arg-type]
        prompt_of = dict(zip(keys, prompts, strict=True))
        todo = {k: prompt_of[k] for k in dict.fromkeys(keys) if k not in results}

        def answered(key: str, completion: Completion, discount: float = 1.0) -> None:
            self._answered(key, completion, stats, discount)
            for _ in range(copies[key]):
                self._used(stats, completion)
            results[key] = completion

        if todo and self.batch and self.backend.supports_batch:
            discount = self.backend.config.batch_discount

            def batch_answer(key: str, completion: Completion) -> None:
                stats.batch_requests += 1
                answered(key, completion, discount)

            leftovers = await run_batches(self.backend, self.cache, todo, self.sampling, batch_answer, self.progress,
                                          admit=self._admit_batch(todo, results, stats))
            todo = {k: todo[k] for k in leftovers}
        if todo and self.local:
            order = list(todo)

            def on_done(index: int, outcome: Completion | BaseException) -> None:
                if isinstance(outcome, Completion):
                    answered(order[index], outcome)
                else:
                    results[order[index]] = self._failed(outcome, stats)

            await self.backend.complete_many([todo[k] for k in order], self.sampling, on_done, self.control)
        elif todo:
            answers = await asyncio.gather(*(self.ask(todo[k], sample, stats) for k in todo))
            for key, answer in zip(todo, answers, strict=True):
                results[key] = answer
                for _ in range(copies[key] - 1):
                    if isinstance(answer, Completion):
                        self._hit(answer, stats)
        return [results[k] for k in keys]

    def _admit_batch(self, todo: Mapping[str, str], results: dict[str, Completion | Failure], stats: RoundStats):
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
                    results[key] = self._failed(exc, stats)
                    continue
                admitted.append(key)
            return admitted

        return admit


class _Phases:
    """Collects the requests of a round's records and sends them together (`RequestRunner.run`)
    once every record still running is waiting for one: a phase barrier, for batch mode and
    local backends."""

    def __init__(self, runner: RequestRunner, round: int, stats: RoundStats, records: int) -> None:
        self.runner, self.round, self.stats = runner, round, stats
        self.running = records
        self.waiting: list[tuple[str, asyncio.Future]] = []
        self.step = 0
        self.tasks: list[asyncio.Task] = []

    async def ask(self, prompt: str, kind: str) -> Completion | Failure:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiting.append((prompt, future))
        self._flush_when_all_wait()
        return await future

    def finished(self) -> None:
        self.running -= 1
        self._flush_when_all_wait()

    def _flush_when_all_wait(self) -> None:
        if self.waiting and len(self.waiting) == self.running:
            batch, self.waiting = self.waiting, []
            self.step += 1
            self.tasks.append(asyncio.ensure_future(self._send(batch, f"round {self.round} step {self.step}")))

    async def _send(self, batch: list[tuple[str, asyncio.Future]], label: str) -> None:
        try:
            answers = await self.runner.run(label, [prompt for prompt, _ in batch], self.round, self.stats)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)


class Evolver:
    """Evolves a pool over rounds, record by record (see the module docstring)."""

    def __init__(self, runner: RequestRunner | None, heuristics: Sequence[Heuristic], weights: Mapping[str, float],
                 seed: int, filters: Sequence[Filter], backend: str = "", model: str = "",
                 max_failure_share: float = 1.0, check_timeout: float = 0.0,
                 plugins: PluginPool | None = None) -> None:
        self.runner = runner
        #: Where plugin code runs (off the event loop), and the limit of one filter call (0 = none).
        self.plugins = plugins or PluginPool(threads=2 * runner.control.concurrency if runner else 8)
        self.check_timeout = check_timeout
        self.heuristics, self.weights, self.seed, self.filters = heuristics, weights, seed, filters
        self.backend = backend or (runner.backend.name if runner else "")
        self.model = model or (runner.model if runner else "")
        self.max_failure_share = max_failure_share
        self.failed = 0
        self.last_failure = ""
        self.stop_error: BaseException | None = None

    async def record(self, parent: Record, round: int, ask: Ask, stats: RoundStats) -> Record:
        """One evolution attempt of `parent` in `round`: evolve, answer, the free rules, then the
        LLM judges (only for evolutions that pass every free rule). Plugin code runs in the plugin
        pool (`plugin_pool`), off the event loop unless the object says it is fast."""
        heuristic = draw(self.heuristics, self.weights, self.seed, parent.id, round)

        def attempt(status: str, instruction: str = "", response: str = "", reasons: Sequence[Rejection] = ()) -> Record:
            return evolved_record(parent, round, heuristic.name, instruction, response, self.backend, self.model,
                                  status, reasons)

        with plugin_code("heuristic", heuristic.name):
            prompt = await self.plugins.call(heuristic, "render", parent.instruction,
                                             default="loop" if type(heuristic).render is Heuristic.render else "thread")
        evolution = await ask(prompt, "evolve")
        if isinstance(evolution, Failure):
            return attempt("failed", reasons=[Rejection("request_failed", evolution.reason)])
        instruction, stripped = strip_scaffolding(evolution.text)
        stats.scaffolding_stripped += stripped
        if not instruction:
            return attempt("failed", reasons=[Rejection("empty_evolution", "the evolver returned an empty instruction")])
        answer = await ask(instruction, "answer")
        if isinstance(answer, Failure):
            return attempt("failed", instruction, reasons=[Rejection("request_failed", answer.reason)])
        response = answer.text.strip()
        candidate = Candidate(parent.instruction, instruction, response, answer.finish_reason)
        # Every filter's first look at once: rule-only filters decide, judges return their question.
        firsts: list[Rejection | str | None] = [None] * len(self.filters)
        pooled = [i for i, f in enumerate(self.filters) if runs_in(f) != "loop"]
        for i, f in enumerate(self.filters):
            if runs_in(f) == "loop":  # inline: no task to create, nothing to wait for
                firsts[i] = await self._first_look(f, candidate, stats)
        if pooled:  # the pooled ones side by side
            looks = await asyncio.gather(*(self._first_look(self.filters[i], candidate, stats) for i in pooled))
            for i, look in zip(pooled, looks, strict=True):
                firsts[i] = look
        rejections = [outcome for outcome in firsts if isinstance(outcome, Rejection)]
        questions = [(f, q) for f, q in zip(self.filters, firsts, strict=True) if isinstance(q, str)]
        for f, question in questions:
            if rejections:
                break
            verdict = await ask(question, f"judge:{f.name}")
            if isinstance(verdict, Failure):  # the judge never answered: the evolution failed, not eliminated
                return attempt("failed", instruction, response, [Rejection("request_failed", verdict.reason)])
            rejection = await self._check(f, stats, "check", candidate, verdict.text)
            if rejection:
                rejections.append(rejection)
        return attempt("eliminated" if rejections else "kept", instruction, response, rejections)

    async def _first_look(self, f: Filter, candidate: Candidate, stats: RoundStats) -> Rejection | str | None:
        """A filter's judge question for `candidate`, or (rule-only filters) its verdict."""
        question = await self._check(f, stats, "judge_prompt", candidate)
        if isinstance(question, Rejection) or question is not None:
            return question
        return await self._check(f, stats, "check", candidate, None)

    async def _check(self, f: Filter, stats: RoundStats, method: str, *args: object) -> Any:
        """One call of a filter's `method` in the plugin pool, bounded by `evolve.check_timeout`: a
        call past it is a `check_timeout` rejection naming the plugin."""
        with plugin_code("filter", f.name):  # a filter's bug stops the stage, naming its plugin
            try:
                return await self.plugins.call(f, method, *args, timeout=self.check_timeout)
            except CheckTimedOut as timed_out:
                exc = timed_out
        # Past the limit: the record is eliminated and the stage goes on.
        who = plugin_name("filter", f.name)
        stats.check_timeouts[who] = stats.check_timeouts.get(who, 0) + 1
        return Rejection(CHECK_TIMEOUT, f"{who}: {method} {exc} (evolve.check_timeout)")

    def _decided(self, record: Record, stats: RoundStats, planned: int) -> None:
        setattr(stats, record.status, getattr(stats, record.status) + 1)
        for reason in record.reasons:
            stats.rejections[reason.rule] = stats.rejections.get(reason.rule, 0) + 1
        if record.status == "failed":
            self.failed += 1
            self.last_failure = f"{record.reasons[0].rule}: {record.reasons[0].evidence}" if record.reasons else ""
            budget = self.runner.control.budget if self.runner else None
            if budget is not None and record.reasons and "BudgetExhausted" in record.reasons[0].evidence:
                self._stop(BudgetReached(
                    f"evolver.budget_usd {budget.limit:.2f} reached in round {record.round}: spent "
                    f"${budget.spent:.4f} in this run, {budget.refused} requests not sent; every answer so far is cached",
                    "raise evolver.budget_usd and rerun: answered requests will not be paid again"))
            elif self.failed > self.max_failure_share * planned:
                self._stop(EvolError(
                    f"{self.failed} evolutions failed, more than evolver.max_failure_share "
                    f"{self.max_failure_share:.1%} of the {planned} this run makes; stopped early. Last: "
                    f"{self.last_failure[:300]}",
                    "fix the cause and rerun: answered requests are cached and will not be paid again"))

    def _stop(self, error: BaseException) -> None:
        """Stop sending: requests in flight finish (and are cached); nothing new is sent."""
        if self.stop_error is None:
            self.stop_error = error
        if self.runner is not None:
            self.runner.sender.stopping = True

    async def run(self, pool: Sequence[Record], first: int, last: int,
                  on_round: Callable[[int, list[Record], RoundStats], None] | None = None,
                  ) -> tuple[dict[int, list[Record]], list[Record], dict[int, RoundStats]]:
        """Rounds `first`..`last` over `pool`. Returns every attempt by round, the final pool and
        the stats by round; `on_round(k, attempts, stats)` is called as each round completes."""
        assert self.runner is not None
        rounds = list(range(first, last + 1))
        stats = {k: RoundStats(round=k, attempted=len(pool)) for k in rounds}
        attempts: dict[int, list[Record | None]] = {k: [None] * len(pool) for k in rounds}
        progress = self.runner.progress
        progress.begin({k: len(pool) for k in rounds}, stats)
        planned = len(pool) * len(rounds)
        current = list(pool)
        try:
            if self.runner.phased:
                await self._run_phased(current, rounds, stats, attempts, planned, on_round)
            else:
                await self._run_streamed(current, rounds, stats, attempts, planned, on_round)
        finally:
            progress.end()
            self.plugins.shutdown()
        if self.stop_error is not None:
            raise self.stop_error
        done = {k: [r for r in attempts[k] if r is not None] for k in rounds}
        return done, current, stats

    def _place(self, k: int, i: int, record: Record, current: list[Record], stats: dict[int, RoundStats],
               attempts: dict[int, list[Record | None]], planned: int, left: dict[int, int],
               on_round: Callable[[int, list[Record], RoundStats], None] | None, paid: bool = True) -> None:
        attempts[k][i] = record
        if record.status == "kept":
            current[i] = record
        self._decided(record, stats[k], planned)
        self.runner.progress.record_done(k, paid)  # type: ignore[union-attr]
        left[k] -= 1
        if left[k] == 0 and on_round is not None and self.stop_error is None:
            on_round(k, attempts[k], stats[k])  # type: ignore[arg-type]

    async def _run_streamed(self, current: list[Record], rounds: list[int], stats: dict[int, RoundStats],
                            attempts: dict[int, list[Record | None]], planned: int,
                            on_round: Callable[[int, list[Record], RoundStats], None] | None) -> None:
        """Each record through its rounds on its own; workers take the lowest (round, position)
        that is ready, so a round's tail overlaps the next round's head."""
        runner = self.runner
        assert runner is not None
        queue: asyncio.PriorityQueue[tuple[int, int]] = asyncio.PriorityQueue()
        for i in range(len(current)):
            queue.put_nowait((rounds[0], i))
        left = {k: len(current) for k in rounds}
        remaining = [len(current) * len(rounds)]
        workers_count = max(2, 2 * runner.control.concurrency)
        last = rounds[-1]

        def release_all() -> None:
            for _ in range(workers_count):
                queue.put_nowait((-1, -1))

        async def worker() -> None:
            while True:
                k, i = await queue.get()
                if k < 0 or self.stop_error is not None:
                    return

                def ask(prompt: str, kind: str, k: int = k) -> Awaitable[Completion | Failure]:
                    return runner.ask(prompt, k, stats[k], kind)

                paid = [False]
                _record_paid.set(paid)
                try:
                    record = await self.record(current[i], k, ask, stats[k])
                except Stopped:
                    release_all()
                    return
                self._place(k, i, record, current, stats, attempts, planned, left, on_round, paid[0])
                remaining[0] -= 1
                if self.stop_error is not None:
                    release_all()
                    return
                if k < last:
                    queue.put_nowait((k + 1, i))
                elif remaining[0] == 0:
                    release_all()

        if not current:
            return
        tasks = [asyncio.ensure_future(worker()) for _ in range(min(workers_count, len(current)))]
        try:
            for finished in asyncio.as_completed(tasks):
                try:
                    await finished
                except FatalRequestError as exc:
                    self._abort(exc, tasks)
                    raise EvolError(str(exc), "fix it and rerun: answered requests are cached") from None
                except BaseException as exc:
                    self._abort(exc, tasks)
                    raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _abort(self, error: BaseException, tasks: list[asyncio.Task]) -> None:
        self._stop(error)
        for task in tasks:
            task.cancel()

    async def _run_phased(self, current: list[Record], rounds: list[int], stats: dict[int, RoundStats],
                          attempts: dict[int, list[Record | None]], planned: int,
                          on_round: Callable[[int, list[Record], RoundStats], None] | None) -> None:
        """Round by round, each a sequence of phases (evolve, answer, each judge) sent together."""
        assert self.runner is not None
        left = {k: len(current) for k in rounds}
        for k in rounds:
            phases = _Phases(self.runner, k, stats[k], len(current))

            async def one(i: int, parent: Record, k: int = k, phases: _Phases = phases) -> None:
                _record_paid.set(None)  # phases are sent together: counted as paid (the default)
                try:
                    record = await self.record(parent, k, phases.ask, stats[k])
                finally:
                    phases.finished()
                self._place(k, i, record, current, stats, attempts, planned, left, on_round)

            outcomes = await asyncio.gather(*(one(i, parent) for i, parent in enumerate(list(current))),
                                            return_exceptions=True)
            await asyncio.gather(*phases.tasks, return_exceptions=True)
            errors = [e for e in outcomes if isinstance(e, BaseException) and not isinstance(e, Stopped)]
            fatal = next((e for e in errors if isinstance(e, FatalRequestError)), None)
            if fatal is not None:
                raise EvolError(str(fatal), "fix it and rerun: answered requests are cached")
            if errors:
                raise errors[0]
            if self.stop_error is not None:
                return


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
    attempts, next_pool, stats = await Evolver(runner, heuristics, weights, seed, filters).run(pool, round, round)
    return attempts[round], next_pool, stats[round]
