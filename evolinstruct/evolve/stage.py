"""The evolve stage's work, given its params and its plugin objects: build the request runner,
evolve the seed pool round by round, and write each round's file, the answers it used
(data/answers/round_<k>.jsonl: read back first, so a clone that pulled them pays only for new
rounds), the manifest, the metrics and the report. `stages/evolve.py` reads params.yaml once, picks the plugins, and calls `evolve_stage`.

`build_runner` is the one place a request runner is assembled from `evolver` params (price,
budget, control); the stage, `evol estimate` and `evolinstruct.testing` all use it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.core.errors import EvolError, ParamsError
from evolinstruct.core.params import EvolveParams, EvolverConfig, Params
from evolinstruct.core.progress import EvolveProgress
from evolinstruct.core.records import read_records, round_path, write_records
from evolinstruct.evolve.filters import Filter
from evolinstruct.evolve.heuristics import Heuristic
from evolinstruct.evolve.rounds import Evolver, RequestRunner, RoundStats
from evolinstruct.llm.backends import Backend
from evolinstruct.llm.cost import Budget, load_prices, price_for
from evolinstruct.llm.request_cache import RequestCache, open_cache, prune_answers
from evolinstruct.llm.types import Sampling

log = logging.getLogger(__name__)

#: The per-round detail: the paper's data-size table and what this run paid (a stage output).
REPORT = Path("reports/evolve.json")


@dataclass
class EvolvePlugins:
    """The plugin objects one evolve run uses, picked by the stage from the registry."""

    backend: Backend
    heuristics: Sequence[Heuristic]
    filters: Sequence[Filter]
    #: The backend plugin's "dist version" (part of every request key: a fixed plugin is not served old answers).
    version: str = ""
    #: "dist==version, ..." of every plugin used, for the metrics.
    used: str = ""


def choose_heuristics(params: EvolveParams, available: Mapping[str, Heuristic]) -> list[Heuristic]:
    """The heuristics of the configured family among `available`, with the weights checked."""
    heuristics = [h for h in available.values() if h.family == params.family]
    if not heuristics:
        raise EvolError(f"params.yaml: evolve.family: no heuristic has family '{params.family}'",
                        "`evol plugins` lists the heuristics and their families")
    unknown = sorted(set(params.weights) - {h.name for h in heuristics})
    if unknown:
        raise EvolError(f"params.yaml: evolve.weights.{unknown[0]}: no heuristic of family '{params.family}' has this name")
    return heuristics


def choose_filters(params: EvolveParams, pick: Callable[[str], Filter]) -> list[Filter]:
    """The filters `evolve.filters` names, in that order (the free rules run first anyway)."""
    return [pick(name) for name in params.filters]


def check_backend(backend: Backend, config: EvolverConfig) -> Backend:
    """Fail at once, before any work, when the mode is unsupported or a key or address is missing."""
    if config.mode == "batch" and not backend.supports_batch:
        raise ParamsError("params.yaml", "evolver.mode",
                          f"backend '{config.backend}' has no batch API", "use mode: online")
    backend.check_ready()
    return backend


def build_runner(config: EvolverConfig, backend: Backend, cache: RequestCache, version: str = "",
                 progress: EvolveProgress | None = None) -> RequestRunner:
    """The request runner for `evolver` params: sampling, price, budget cap, and the backend's
    control (concurrency, retries, limits, hedging: `dispatch.control_for`)."""
    price = price_for(load_prices(overrides=config.prices), config.model)
    control = backend.control()
    if config.budget_usd > 0:
        if price is None:
            raise ParamsError("prices.yaml", config.model,
                              "evolver.budget_usd is set but the model has no price",
                              f"add `{config.model}: {{input: ..., output: ...}}` in USD per million tokens")
        control.budget = Budget(config.budget_usd, price)
    return RequestRunner(backend, cache, Sampling.from_config(config), control, price, progress, version)


def make_evolver(runner: RequestRunner | None, params: EvolveParams, plugins: EvolvePlugins | None = None, *,
                 heuristics: Sequence[Heuristic] = (), filters: Sequence[Filter] = (), backend: str = "",
                 model: str = "", max_failure_share: float = 1.0) -> Evolver:
    """The round loop with the `evolve` params (weights, seed, check timeout)."""
    return Evolver(runner, plugins.heuristics if plugins else heuristics, params.weights, params.seed,
                   plugins.filters if plugins else filters, backend, model, max_failure_share=max_failure_share,
                   check_timeout=params.check_timeout)


async def evolve_rounds(params: Params, plugins: EvolvePlugins, progress: EvolveProgress | None = None,
                        ) -> list[RoundStats]:
    """Evolve the seed pool for `params.rounds` rounds, writing each round's file as soon as it is complete."""
    config, rounds = params.evolver, params.rounds
    pool = read_records(paths.SEED)
    # The answers pulled with the data first: a teammate's clone replays the rounds it was built from.
    cache = open_cache(config.cache, answers=paths.ANSWERS)
    progress = progress or EvolveProgress()
    try:
        runner = build_runner(config, plugins.backend, cache, plugins.version, progress)
        evolver = make_evolver(runner, params.evolve, plugins, max_failure_share=config.max_failure_share)

        def finished(k: int, attempts: list, stats: RoundStats) -> None:
            write_records(round_path(paths.EVOLVED, k), attempts)
            cache.export_round(paths.ANSWERS, k)  # what round k used, shared with the data (dvc push)
            progress.break_line()
            log.info("round %d: %d kept, %d eliminated, %d failed; %d requests sent (%d retries), %d cache hits, "
                     "$%.4f", k, stats.kept, stats.eliminated, stats.failed, stats.requests_sent, stats.retries,
                     stats.cache_hits, stats.cost_usd)

        prune_answers(paths.ANSWERS, rounds)
        if rounds == 0:
            return []
        _, _, stats = await evolver.run(pool, 1, rounds, on_round=finished)
    finally:
        await plugins.backend.aclose()
        cache.close()
    return [stats[k] for k in range(1, rounds + 1)]


def evolve_stage(params: Params, plugins: EvolvePlugins) -> None:
    """The whole stage: every round's file, the manifest, metrics/evolve.json and the report."""
    rounds = params.rounds
    paths.EVOLVED.mkdir(parents=True, exist_ok=True)
    stats = asyncio.run(evolve_rounds(params, plugins))
    write_json(paths.EVOLVED / "manifest.json", {"rounds": rounds, "files": [f"round_{k}.jsonl" for k in range(1, rounds + 1)]})
    write_json(REPORT, evolve_report(params.evolver, stats))
    write_json(paths.METRICS / "evolve.json", {**evolve_metrics(stats), "plugins": plugins.used})


def evolve_metrics(stats: list[RoundStats]) -> dict[str, object]:
    """A few headline numbers describing the stage's output and what producing it cost, whether
    this run paid or the request cache answered: the same for the same output, so an experiment
    that skipped the stage does not seem to have paid (METRICS convention)."""
    return {
        "output_records": sum(s.attempted for s in stats),
        "output_kept": sum(s.kept for s in stats),
        "output_eliminated": sum(s.eliminated for s in stats),
        "output_failed": sum(s.failed for s in stats),
        "output_requests": sum(s.requests_sent + s.cache_hits - s.request_failures for s in stats),
        "output_tokens": sum(s.output_prompt_tokens + s.output_completion_tokens for s in stats),
        "output_cost_usd": round(sum(s.output_cost_usd for s in stats), 6),
    }


def evolve_report(config: EvolverConfig, stats: list[RoundStats]) -> dict[str, object]:
    """Per round: records that entered, were evolved (kept), eliminated by each rule, failed and
    returned to the pool (the paper's data-size table), scaffolding stripped, filter calls past
    `evolve.check_timeout` by plugin; and what this run sent and paid, in total and per backend."""
    table = [{"round": s.round, "entered": s.attempted, "evolved": s.kept, "eliminated": s.eliminated,
              "eliminated_by_rule": dict(sorted(s.rejections.items())), "failed": s.failed,
              "returned_to_pool": s.returned_to_pool, "scaffolding_stripped": s.scaffolding_stripped,
              **({"check_timeouts": dict(sorted(s.check_timeouts.items()))} if s.check_timeouts else {})}
             for s in stats]
    keys = ("requests_sent", "cache_hits", "retries", "request_failures", "batch_requests", "hedged",
            "prompt_tokens", "completion_tokens")
    run_totals: dict[str, object] = {key: sum(getattr(s, key) for s in stats) for key in keys}
    run_totals["cost_usd"] = round(sum(s.cost_usd for s in stats), 6)
    return {
        "backend": config.backend,
        "model": config.model,
        "mode": config.mode,
        "rounds_table": table,
        "this_run": run_totals,
        "by_backend": {config.backend: {k: run_totals[k] for k in ("requests_sent", "prompt_tokens",
                                                                   "completion_tokens", "cost_usd")}},
        "rounds": {str(s.round): s.to_json() for s in stats},
    }
