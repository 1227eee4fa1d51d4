"""Stage `evolve`: run `rounds` rounds of Code Evol-Instruct over the seed pool.

Writes every attempt of round k to data/evolved/round_<k>.jsonl (kept, eliminated and failed,
with reasons), the answers round k used to data/answers/round_<k>.jsonl (read back first, so a
clone that pulled them pays only for new rounds), a manifest, headline metrics of the output to
metrics/evolve.json, and the per-round table and this run's spend to reports/evolve.json.
Params: top-level `rounds`, the `evolver` group (backend), the `evolve` group (method), and the
`plugins` group (each plugin's own params); the `backend`, `heuristic` and `filter` entries of
plugins.lock.yaml record the plugin versions. The work is `evolinstruct.evolve.stage`'s.
"""

from __future__ import annotations

from evolinstruct.core.params import EvolveParams, EvolverConfig, Params, read_params
from evolinstruct.core.stage import run_stage
from evolinstruct.evolve.filters import Filter
from evolinstruct.evolve.heuristics import Heuristic
from evolinstruct.evolve.rounds import RequestRunner
from evolinstruct.evolve.stage import (
    EvolvePlugins,
    build_runner,
    check_backend,
    choose_filters,
    choose_heuristics,
    evolve_stage,
)
from evolinstruct.llm.backends import Backend
from evolinstruct.llm.request_cache import RequestCache
from evolinstruct.registry import Registry, get_registry, prepare


def heuristics_for(params: EvolveParams) -> list[Heuristic]:
    """The registered heuristics of the configured family, with the weights checked."""
    return choose_heuristics(params, get_registry().heuristics())


def filters_for(params: EvolveParams) -> list[Filter]:
    """The registered filters `evolve.filters` names, in that order."""
    return choose_filters(params, lambda name: get_registry().pick("filter", name))


def make_backend(config: EvolverConfig) -> Backend:
    """The configured backend, checked ready (key, address, mode) before any work."""
    return check_backend(get_registry().make_backend(config), config)


def make_runner(backend: Backend, config: EvolverConfig, cache: RequestCache) -> RequestRunner:
    """`build_runner` with the backend plugin's version in the request keys."""
    return build_runner(config, backend, cache, get_registry().version_key("backend", backend.name))


def plugins_for(params: Params, registry: Registry) -> EvolvePlugins:
    """The plugin objects the params select."""
    config, evolve = params.evolver, params.evolve
    used = [("backend", config.backend), *(("heuristic", h.name) for h in heuristics_for(evolve)),
            *(("filter", name) for name in evolve.filters)]
    return EvolvePlugins(make_backend(config), heuristics_for(evolve), filters_for(evolve),
                         registry.version_key("backend", config.backend), registry.used(used))


def main() -> None:
    params = read_params()  # once: every value below comes from this one read
    registry = prepare("evolve", params=params)
    evolve_stage(params, plugins_for(params, registry))


if __name__ == "__main__":
    run_stage("evolve", main)
