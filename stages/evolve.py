"""Stage `evolve`: run `rounds` rounds of Code Evol-Instruct over the seed pool.

Writes every attempt of round k to data/evolved/round_<k>.jsonl (kept, eliminated and failed,
with reasons), the answers round k used to data/answers/round_<k>.jsonl (read back first, so a
clone that pulled them pays only for new rounds), a manifest, headline metrics of the output to metrics/evolve.json, and the
per-round table and this run's spend to reports/evolve.json.
Params: top-level `rounds`, the `evolver` group (backend), the `evolve` group (method), and the
`plugins` group (each plugin's own params); the `backend`, `heuristic` and `filter` entries of
plugins.lock.yaml record the plugin versions.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.core.errors import EvolError, ParamsError
from evolinstruct.core.params import EvolveParams, EvolverConfig, read_group, read_rounds
from evolinstruct.core.progress import EvolveProgress
from evolinstruct.core.records import read_records, round_path, write_records
from evolinstruct.core.stage import run_stage
from evolinstruct.evolve.filters import Filter
from evolinstruct.evolve.heuristics import Heuristic
from evolinstruct.evolve.rounds import Evolver, RequestRunner, RoundStats
from evolinstruct.llm.backends import Backend, Sampling
from evolinstruct.llm.cost import Budget, load_prices, price_for
from evolinstruct.llm.request_cache import RequestCache, open_cache, prune_answers
from evolinstruct.registry import get_registry, prepare

log = logging.getLogger(__name__)
#: The kinds of plugin object this stage uses: its entries in plugins.lock.yaml (see dvc.yaml).
PLUGIN_KINDS = ("backend", "heuristic", "filter")


def make_backend(config: EvolverConfig) -> Backend:
    backend = get_registry().make_backend(config)
    if config.mode == "batch" and not backend.supports_batch:
        raise ParamsError("params.yaml", "evolver.mode",
                          f"backend '{config.backend}' has no batch API", "use mode: online")
    backend.check_ready()  # fail at once, before any work, when a key or address is missing
    return backend


def make_runner(backend: Backend, config: EvolverConfig, cache: RequestCache,
                progress: EvolveProgress | None = None) -> RequestRunner:
    """The request runner with the price, the budget cap and the limits from `evolver` params."""
    price = price_for(load_prices(overrides=config.prices), config.model)
    control = backend.control()
    if config.budget_usd > 0:
        if price is None:
            raise ParamsError("prices.yaml", config.model,
                              "evolver.budget_usd is set but the model has no price",
                              f"add `{config.model}: {{input: ..., output: ...}}` in USD per million tokens")
        control.budget = Budget(config.budget_usd, price)
    version = get_registry().version_key("backend", backend.name)  # a fixed plugin is not served old answers
    return RequestRunner(backend, cache, Sampling.from_config(config), control, price, progress, version)


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


def filters_for(params: EvolveParams) -> list[Filter]:
    """The registered filters `evolve.filters` names, in that order (the free rules run first anyway)."""
    registry = get_registry()
    return [registry.pick("filter", name) for name in params.filters]


async def run(rounds: int, config: EvolverConfig, params: EvolveParams, backend: Backend,
              progress: EvolveProgress | None = None) -> list[RoundStats]:
    """Evolve the seed pool for `rounds` rounds, writing each round's file as soon as it is complete."""
    heuristics, filters = heuristics_for(params), filters_for(params)
    pool = read_records(paths.SEED)
    # The answers pulled with the data first: a teammate's clone replays the rounds it was built from.
    cache = open_cache(config.cache, answers=paths.ANSWERS)
    progress = progress or EvolveProgress()
    runner = make_runner(backend, config, cache, progress)
    evolver = Evolver(runner, heuristics, params.weights, params.seed, filters,
                      max_failure_share=config.max_failure_share)

    def finished(k: int, attempts: list, stats: RoundStats) -> None:
        write_records(round_path(paths.EVOLVED, k), attempts)
        cache.export_round(paths.ANSWERS, k)  # what round k used, shared with the data (dvc push)
        progress.break_line()
        log.info("round %d: %d kept, %d eliminated, %d failed; %d requests sent (%d retries), %d cache hits, "
                 "$%.4f", k, stats.kept, stats.eliminated, stats.failed, stats.requests_sent, stats.retries,
                 stats.cache_hits, stats.cost_usd)

    prune_answers(paths.ANSWERS, rounds)
    try:
        if rounds == 0:
            return []
        _, _, stats = await evolver.run(pool, 1, rounds, on_round=finished)
    finally:
        await backend.aclose()
        cache.close()
    return [stats[k] for k in range(1, rounds + 1)]


def main() -> None:
    registry = prepare(PLUGIN_KINDS)
    rounds = read_rounds()
    config = read_group(EvolverConfig, "evolver")
    params = read_group(EvolveParams, "evolve")
    backend = make_backend(config)
    paths.EVOLVED.mkdir(parents=True, exist_ok=True)
    stats = asyncio.run(run(rounds, config, params, backend))
    write_json(paths.EVOLVED / "manifest.json", {"rounds": rounds, "files": [f"round_{k}.jsonl" for k in range(1, rounds + 1)]})
    write_json(REPORT, evolve_report(config, stats))
    used = [("backend", config.backend), *(("heuristic", h.name) for h in heuristics_for(params)),
            *(("filter", name) for name in params.filters)]
    write_json(paths.METRICS / "evolve.json", {**evolve_metrics(stats), "plugins": registry.used(used)})


#: The per-round detail: the paper's data-size table and what this run paid (a stage output).
REPORT = Path("reports/evolve.json")


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
    returned to the pool (the paper's data-size table), scaffolding stripped; and what this run
    sent and paid, in total and per backend."""
    table = [{"round": s.round, "entered": s.attempted, "evolved": s.kept, "eliminated": s.eliminated,
              "eliminated_by_rule": dict(sorted(s.rejections.items())), "failed": s.failed,
              "returned_to_pool": s.returned_to_pool, "scaffolding_stripped": s.scaffolding_stripped}
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


if __name__ == "__main__":
    run_stage("evolve", main)
