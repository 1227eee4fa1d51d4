"""Stage `evolve`: run `rounds` rounds of Code Evol-Instruct over the seed pool.

Writes every attempt of round k to data/evolved/round_<k>.jsonl (kept, eliminated and failed,
with reasons), a manifest, and request/token metrics per round to metrics/evolve.json.
Params: top-level `rounds`, the `evolver` group (backend) and the `evolve` group (method).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from evolinstruct import paths
from evolinstruct.atomic import write_json
from evolinstruct.backends import Backend, EvolverConfig, Sampling
from evolinstruct.errors import EvolError
from evolinstruct.evolution import RequestRunner, RoundStats, evolve_round
from evolinstruct.params import read_group, read_rounds
from evolinstruct.records import read_records, round_path, write_records
from evolinstruct.registry import get_registry
from evolinstruct.request_cache import RequestCache
from evolinstruct.stage import run_stage

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
    backend = get_registry().pick("backend", config.backend)(config)
    backend.check_ready()  # fail at once, before any work, when a key or address is missing
    return backend


async def run(rounds: int, config: EvolverConfig, params: EvolveParams, backend: Backend) -> list[RoundStats]:
    registry = get_registry()
    heuristics = [h for h in registry.heuristics().values() if h.family == params.family]
    if not heuristics:
        raise EvolError(f"params.yaml: evolve.family: no heuristic has family '{params.family}'",
                        "`evol plugins` lists the heuristics and their families")
    unknown = sorted(set(params.weights) - {h.name for h in heuristics})
    if unknown:
        raise EvolError(f"params.yaml: evolve.weights.{unknown[0]}: no heuristic of family '{params.family}' has this name")
    filters = [registry.pick("filter", name) for name in params.filters]
    pool = read_records(paths.SEED)
    cache = RequestCache(config.cache)
    runner = RequestRunner(backend, cache, Sampling.from_config(config))
    all_stats = []
    failed = attempted = 0
    try:
        for k in range(1, rounds + 1):
            attempts, pool, stats = await evolve_round(pool, k, heuristics, params.weights, params.seed, runner, filters)
            write_records(round_path(paths.EVOLVED, k), attempts)
            log.info("round %d: %d kept, %d eliminated, %d failed; %d requests sent, %d cache hits",
                     k, stats.kept, stats.eliminated, stats.failed, stats.requests_sent, stats.cache_hits)
            all_stats.append(stats)
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
    totals = {key: sum(getattr(s, key) for s in stats) for key in
              ("attempted", "kept", "eliminated", "failed", "requests_sent", "cache_hits", "prompt_tokens", "completion_tokens")}
    write_json(paths.METRICS / "evolve.json", {
        "backend": config.backend,
        "model": config.model,
        "total": totals,
        "rounds": {str(s.round): s.to_json() for s in stats},
    })


if __name__ == "__main__":
    run_stage("evolve", main)
