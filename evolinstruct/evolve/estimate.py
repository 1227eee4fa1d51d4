"""`evol estimate`: what the configured evolve stage will send and cost, before anything is paid.

What the request cache already answers is followed exactly: the real evolution logic is replayed
over the cached answers, so after a complete run every request shows as cached, and one more
round shows only that round's requests to pay. Past the cache, requests are projected: each
evolution is assumed to lengthen its instruction by `growth` (WizardCoder's instructions grow by
roughly a third per round) and every evolution to survive the free filters (the judge is counted
for all: an upper bound). Tokens are estimated at four characters per token. `cost` and `worst`
are for the requests still to pay; the worst case assumes every such answer uses `max_tokens`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evolinstruct.core import paths
from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import Params
from evolinstruct.core.records import Record, read_records
from evolinstruct.evolve.filters import Filter
from evolinstruct.evolve.heuristics import Heuristic
from evolinstruct.evolve.rounds import RoundStats
from evolinstruct.evolve.stage import make_evolver
from evolinstruct.llm.cost import load_prices, price_for
from evolinstruct.llm.dispatch import estimate_tokens
from evolinstruct.llm.request_cache import model_identity, open_cache, request_key
from evolinstruct.llm.types import Completion, Sampling


@dataclass
class RoundEstimate:
    round: int
    requests: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    worst_completion_tokens: int = 0
    cost_usd: float | None = None
    worst_cost_usd: float | None = None


@dataclass
class Estimate:
    backend: str
    model: str
    mode: str
    seeds: int
    rounds: list[RoundEstimate] = field(default_factory=list)
    price_known: bool = True
    budget_usd: float = 0.0

    def total(self) -> RoundEstimate:
        total = RoundEstimate(round=0)
        for r in self.rounds:
            for key in ("requests", "cached", "prompt_tokens", "completion_tokens", "worst_completion_tokens"):
                setattr(total, key, getattr(total, key) + getattr(r, key))
        if self.price_known:
            total.cost_usd = sum(r.cost_usd or 0.0 for r in self.rounds)
            total.worst_cost_usd = sum(r.worst_cost_usd or 0.0 for r in self.rounds)
        return total

    def to_json(self) -> dict[str, object]:
        return {"backend": self.backend, "model": self.model, "mode": self.mode, "seeds": self.seeds,
                "budget_usd": self.budget_usd, "price_known": self.price_known,
                "rounds": [asdict(r) for r in self.rounds], "total": asdict(self.total())}


def estimate(everything: Params, seed_path: Path, heuristics: Sequence[Heuristic], filters: Sequence[Filter],
             version: str = "", growth: float = 1.3, answers: Path = paths.ANSWERS) -> Estimate:
    """Estimate the evolve stage configured by `everything` (the validated params.yaml) over the seed
    records in `seed_path`.

    The real evolution logic (`Evolver.record`) is replayed over the request cache: while a
    record's requests are cached, its rounds follow the real answers exactly (and count as
    cached); from its first request that is not cached, its answers are projected (an evolution
    `growth` times longer, an answer as long as its seed's, a judge saying "Not Equal"), and
    every later request of that record counts as to pay. `heuristics` and `filters` are the
    plugin objects the stage would use, `version` its backend plugin's (part of the request keys).
    The answer files pulled with the data (`answers`, data/answers/) count as cached: paid already.
    """
    rounds, config, params = everything.rounds, everything.evolver, everything.evolve
    if not seed_path.exists():
        raise EvolError(f"{seed_path}: not found; the estimate is computed from the seed data",
                        "run `dvc repro seed` first (it sends no request and costs nothing)")
    seeds = read_records(seed_path)
    sampling = Sampling.from_config(config)
    discount = config.batch_discount if config.mode == "batch" else 1.0
    price = price_for(load_prices(overrides=config.prices), config.model, discount)
    result = Estimate(config.backend, config.model, config.mode, len(seeds), price_known=price is not None,
                      budget_usd=config.budget_usd)
    cache = open_cache(config.cache, answers)
    evolver = make_evolver(None, params, heuristics=heuristics, filters=filters, backend=config.backend,
                           model=config.model)
    model = model_identity(config.model, config.revision)  # once: a local model's hash reads its files
    per_round = {k: RoundEstimate(round=k) for k in range(1, rounds + 1)}
    to_pay = {k: [0, 0] for k in per_round}  # prompt and completion tokens of the requests still to pay

    async def lineage(seed: Record) -> None:
        answer_tokens = min(estimate_tokens(seed.output), sampling.max_tokens)
        projected = False
        parent = seed
        for k in range(1, rounds + 1):
            r = per_round[k]

            async def ask(prompt: str, kind: str, k: int = k, r: RoundEstimate = r, parent: Record = parent) -> Completion:
                nonlocal projected
                r.requests += 1
                r.worst_completion_tokens += sampling.max_tokens
                hit = None
                if not projected and cache is not None:
                    hit = cache.get(request_key(config.backend, model, sampling, prompt, k, version))
                if hit is not None:
                    r.cached += 1
                    r.prompt_tokens += hit.prompt_tokens
                    r.completion_tokens += hit.completion_tokens
                    return hit
                projected = True  # from here on this record's prompts depend on answers not yet known
                if kind == "evolve":
                    text = parent.instruction + " " + "x" * int(len(parent.instruction) * (growth - 1))
                elif kind == "answer":
                    text = "y" * 4 * answer_tokens
                else:
                    text = "Not Equal"
                completion = Completion(text, "stop", estimate_tokens(prompt), estimate_tokens(text))
                r.prompt_tokens += completion.prompt_tokens
                r.completion_tokens += completion.completion_tokens
                to_pay[k][0] += completion.prompt_tokens
                to_pay[k][1] += completion.completion_tokens
                return completion

            attempt = await evolver.record(parent, k, ask, RoundStats(round=k))
            if attempt.status == "kept":
                parent = attempt

    async def replay() -> None:
        for seed in seeds:
            await lineage(seed)

    try:
        asyncio.run(replay())
    finally:
        evolver.plugins.shutdown()
        if cache is not None:
            cache.close()
    for k, r in per_round.items():
        if price is not None:
            r.cost_usd = price.cost(*to_pay[k])
            r.worst_cost_usd = price.cost(to_pay[k][0], (r.requests - r.cached) * sampling.max_tokens)
        result.rounds.append(r)
    return result


def render(est: Estimate) -> str:
    """The estimate as a table, one row per round and a total."""
    def money(value: float | None) -> str:
        return "?" if value is None else f"${value:,.2f}"

    lines = [f"evolve: {est.seeds} seeds x {len(est.rounds)} rounds with {est.backend}:{est.model} ({est.mode} mode)",
             f"{'round':>5} {'requests':>9} {'cached':>7} {'to pay':>7} {'input tok':>11} {'output tok':>11} "
             f"{'cost':>10} {'worst':>10}"]
    for r in [*est.rounds, est.total()]:
        label = "total" if r.round == 0 else str(r.round)
        lines.append(f"{label:>5} {r.requests:>9,} {r.cached:>7,} {r.requests - r.cached:>7,} {r.prompt_tokens:>11,} "
                     f"{r.completion_tokens:>11,} "
                     f"{money(r.cost_usd):>10} {money(r.worst_cost_usd):>10}")
    if not est.price_known:
        lines.append(f"no price for model '{est.model}': add `{est.model}: {{input: ..., output: ...}}` "
                     "(USD per million tokens) to prices.yaml")
    total = est.total()
    if est.budget_usd and total.worst_cost_usd is not None and total.worst_cost_usd > est.budget_usd:
        lines.append(f"evolver.budget_usd {est.budget_usd:.2f} may stop the run before it ends (worst case "
                     f"{money(total.worst_cost_usd)})")
    lines.append("Cached requests are followed exactly and not paid again; cost and worst are for the rest, "
                 "projected assuming instructions grow ~30% per round and every evolution reaches the judge. "
                 "Tokens ~ characters / 4.")
    return "\n".join(lines)
