"""Stage `evolve`: run `rounds` rounds of Code Evol-Instruct over the seed pool.

Writes every attempt of round k to data/evolved/round_<k>.jsonl (kept, eliminated and failed,
with reasons), a manifest, and request/token metrics per round to metrics/evolve.json.
Params: top-level `rounds`, the `evolver` group (backend) and the `evolve` group (method).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.llm.backends import Backend, EvolverConfig, Sampling
from evolinstruct.llm.cost import Budget, price_for
from evolinstruct.core.errors import EvolError, ParamsError
from evolinstruct.evolve.rounds import BudgetReached, RequestRunner, RoundStats, evolve_round
from evolinstruct.evolve.heuristics import Heuristic
from evolinstruct.core.params import read_group, read_rounds
from evolinstruct.core.records import read_records, round_path, write_records
from evolinstruct.registry import get_registry
from evolinstruct.llm.request_cache import RequestCache, cache_path
from evolinstruct.core.stage import run_stage

log = logging.getLogger(__name__)


@dataclass
class EvolveParams:
    #: Heuristic family: "code" (Code Evol-Instruct, WizardCoder) or "general" (WizardLM in-depth
    #: and in-breadth), or a plugin's family.
    family: str = "code"
    #: Per-heuristic weights for the draw, overriding each heuristic's default; 0 disables one.
    weights: dict[str, float] = field(default_factory=dict)
    #: Seed of the per-record, per-round heuristic draw.
    seed: int = 42
    #: Elimination filters applied each round (by name; see `evol plugins`).
    filters: list[str] = field(
        default_factory=lambda: ["copied_prompt_words", "sorry", "stopwords_only", "truncated", "equality"]
    )


def make_backend(config: EvolverConfig) -> Backend:
    if config.mode not in ("online", "batch"):
        raise ParamsError("params.yaml", "evolver.mode", f"expected 'online' or 'batch', got {config.mode!r}")
    backend = get_registry().pick("backend", config.backend)(config)
    if config.mode == "batch" and not backend.supports_batch:
        raise ParamsError("params.yaml", "evolver.mode",
                          f"backend '{config.backend}' has no batch API", "use mode: online")
    backend.check_ready()  # fail at once, before any work, when a key or address is missing
    return backend


def make_runner(backend: Backend, config: EvolverConfig, cache: RequestCache) -> RequestRunner:
    """The request runner with the price, the budget cap and the limits from `evolver` params."""
    price = price_for(config.prices, config.model)
    control = backend.control()
    if config.budget_usd > 0:
        if price is None:
            raise ParamsError("params.yaml", f"evolver.prices.{config.model}",
                              "evolver.budget_usd is set but the model has no price",
                              "add {input: ..., output: ...} in USD per million tokens")
        control.budget = Budget(config.budget_usd, price)
    return RequestRunner(backend, cache, Sampling.from_config(config), control, price)


def heuristics_for(params: EvolveParams) -> list[Heuristic]:
    """The registered heuristics of the configured family, with the weights checked."""
    heuristics = [h for h in get_registry().heuristics().values() if h.family == params.family]
    if not heuristics:
        raise EvolError(f"params.yaml: evolve.family: no heuristic has family '{params.family}'",
                        "`evol plugins` lists the heuristics and their families")
    unknown = sorted(set(params.weights) - {h.name for h in heuristics})
    if unknown:
        raise EvolError(f"params.yaml: evolve.weights.{unknown[0]}: no heuristic of family '{params.family}' has this name")
    return heuristics


async def run(rounds: int, config: EvolverConfig, params: EvolveParams, backend: Backend) -> list[RoundStats]:
    registry = get_registry()
    heuristics = heuristics_for(params)
    filters = [registry.pick("filter", name) for name in params.filters]
    pool = read_records(paths.SEED)
    cache = RequestCache(cache_path(config.cache))
    runner = make_runner(backend, config, cache)
    all_stats = []
    failed = attempted = 0
    try:
        for k in range(1, rounds + 1):
            attempts, pool, stats = await evolve_round(pool, k, heuristics, params.weights, params.seed, runner, filters)
            all_stats.append(stats)
            log.info("round %d: %d kept, %d eliminated, %d failed; %d requests sent (%d retries), %d cache hits, "
                     "$%.4f", k, stats.kept, stats.eliminated, stats.failed, stats.requests_sent, stats.retries,
                     stats.cache_hits, stats.cost_usd)
            if stats.budget_refused:
                spent = sum(s.cost_usd for s in all_stats)
                raise BudgetReached(
                    f"evolver.budget_usd {config.budget_usd:.2f} reached in round {k}: spent ${spent:.4f} in this run, "
                    f"{stats.budget_refused} requests not sent; every answer so far is cached",
                    "raise evolver.budget_usd and rerun: answered requests will not be paid again",
                )
            write_records(round_path(paths.EVOLVED, k), attempts)
            failed, attempted = failed + stats.failed, attempted + stats.attempted
    finally:
        await backend.aclose()
        cache.close()
    if attempted and failed / attempted > config.max_failure_share:
        raise EvolError(
            f"{failed} of {attempted} evolutions failed ({failed / attempted:.1%} > evolver.max_failure_share "
            f"{config.max_failure_share:.1%}); the reasons are in {paths.EVOLVED}/round_*.jsonl",
            "fix the cause and rerun: answered requests are cached and will not be paid again",
        )
    return all_stats


def main() -> None:
    rounds = read_rounds()
    config = read_group(EvolverConfig, "evolver")
    params = read_group(EvolveParams, "evolve")
    backend = make_backend(config)
    paths.EVOLVED.mkdir(parents=True, exist_ok=True)
    stats = asyncio.run(run(rounds, config, params, backend))
    write_json(paths.EVOLVED / "manifest.json", {"rounds": rounds, "files": [f"round_{k}.jsonl" for k in range(1, rounds + 1)]})
    write_json(paths.METRICS / "evolve.json", evolve_metrics(config, stats))


def evolve_metrics(config: EvolverConfig, stats: list[RoundStats]) -> dict[str, object]:
    """Requests, tokens and cost per round, in total and per backend (for `dvc metrics show`)."""
    keys = ("attempted", "kept", "eliminated", "failed", "requests_sent", "cache_hits", "retries",
            "request_failures", "batch_requests", "prompt_tokens", "completion_tokens")
    totals: dict[str, object] = {key: sum(getattr(s, key) for s in stats) for key in keys}
    totals["cost_usd"] = round(sum(s.cost_usd for s in stats), 6)
    usage = {key: totals[key] for key in ("requests_sent", "prompt_tokens", "completion_tokens", "cost_usd")}
    return {
        "backend": config.backend,
        "model": config.model,
        "mode": config.mode,
        "total": totals,
        "by_backend": {config.backend: usage},
        "rounds": {str(s.round): s.to_json() for s in stats},
    }


if __name__ == "__main__":
    run_stage("evolve", main)
