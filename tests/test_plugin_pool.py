"""Plugin code runs off the event loop (issue 24): a slow filter delays only its own record, a
plugin can ask for a process pool, and `evolve.check_timeout` bounds one call."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
from doubles import ScriptedBackend
from plugins_under_test import filters, heuristics
from slow_plugins import ProcessFilter, SlowFilter

from evolinstruct.core.params import EvolverConfig
from evolinstruct.core.records import seed_record
from evolinstruct.evolve.rounds import Evolver
from evolinstruct.evolve.stage import build_runner
from evolinstruct.llm.request_cache import RequestCache

CODE = [h for h in heuristics.builtin_heuristics() if h.family == "code"]


class Latent(ScriptedBackend):
    """Answers after `latency` seconds (a server), or after a per-prompt pseudo-random delay."""

    def __init__(self, latency: float = 0.0, jitter_seed: int | None = None, concurrency: int = 64) -> None:
        super().__init__(EvolverConfig(backend="scripted", model="script-1", max_concurrency=concurrency,
                                       max_retries=2, retry_base_delay=0.001))
        self.latency, self.jitter_seed = latency, jitter_seed

    async def complete(self, prompt, sampling):
        delay = self.latency
        if self.jitter_seed is not None:
            delay += (hash((self.jitter_seed, prompt)) % 1000) / 100_000  # 0-10 ms, a different order per seed
        await asyncio.sleep(delay)
        return await super().complete(prompt, sampling)


def evolve(tmp_path, backend, rules, seeds, check_timeout: float = 0.0):
    """One round; (attempts, stats, wall seconds)."""
    cache = RequestCache(tmp_path / f"cache-{time.monotonic_ns()}.sqlite")
    try:
        runner = build_runner(backend.config, backend, cache)
        evolver = Evolver(runner, CODE, {}, 42, rules, check_timeout=check_timeout)
        started = time.monotonic()
        attempts, _, stats = asyncio.run(evolver.run(seeds, 1, 1))
        return attempts[1], stats[1], time.monotonic() - started
    finally:
        cache.close()


SEEDS = [seed_record(f"Write function number {i} of the statistics library.", "x") for i in range(800)]


@pytest.mark.slow
def test_a_filter_taking_200ms_per_record_costs_800_records_at_concurrency_64_at_most_30_percent(tmp_path):
    base = [filters.ShortSorry(), filters.OnlyStopWords()]
    _, _, without = evolve(tmp_path, Latent(0.2), base, SEEDS)
    attempts, stats, with_slow = evolve(tmp_path, Latent(0.2), [*base, SlowFilter(seconds=0.2)], SEEDS)
    print(f"800 records, concurrency 64, 200 ms per request: {without:.2f} s without the filter, "
          f"{with_slow:.2f} s with a 200 ms filter ({with_slow / without:.2f}x; on the event loop it would "
          f"add 800 x 0.2 = 160 s)")
    assert stats.kept == 800
    assert with_slow <= 1.3 * without


def test_a_check_past_check_timeout_eliminates_its_record_naming_the_plugin_and_outputs_stay_identical(tmp_path):
    seeds = [seed_record(f"Write function number {i}{' and hang' if i % 10 == 3 else ''}.", "x") for i in range(40)]
    rule = SlowFilter(seconds=0.0, hang_on="hang", hang=1.5)
    runs = []
    for jitter in (1, 2):
        attempts, stats, seconds = evolve(tmp_path, Latent(jitter_seed=jitter), [filters.ShortSorry(), rule], seeds,
                                          check_timeout=0.3)
        runs.append(([json.dumps(r.to_json(), sort_keys=True) for r in attempts], stats, seconds))
    (first, stats, seconds), (second, _, _) = runs
    assert first == second  # whatever order the answers arrived in
    timed_out = [r for r in runs[0][0] if "check_timeout" in r]
    assert len(timed_out) == 4 and all("hang" in r for r in timed_out)
    assert stats.rejections == {"check_timeout": 4} and stats.kept == 36
    (who, count), = stats.check_timeouts.items()
    assert count == 4 and "filter 'slow'" in who
    evidence = json.loads(timed_out[0])["reasons"][0]["evidence"]
    assert "filter 'slow'" in evidence and "0.3 s" in evidence and "evolve.check_timeout" in evidence
    assert seconds < 5  # the hung calls were abandoned, not waited for


def test_a_plugin_that_declares_its_checks_cpu_bound_runs_in_worker_processes(tmp_path):
    seeds = [seed_record(f"Write function number {i}.", "x") for i in range(4)]
    attempts, stats, _ = evolve(tmp_path, Latent(), [ProcessFilter()], seeds)
    (rejected,) = [r for r in attempts if r.status == "eliminated"]
    assert rejected.reasons[0].rule == "in_process"
    assert int(rejected.reasons[0].evidence.split()[1]) != os.getpid()
