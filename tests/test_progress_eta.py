"""The evolve progress line's ETA (issue 21): `ETA ?` until a record that sent requests has
finished, and a pace that ignores records answered from the cache, so an earlier round replayed
from the cache does not make the ETA of a paid round look like a second."""

from __future__ import annotations

import asyncio
import io
import re

from doubles import ScriptedBackend
from plugins_under_test import filters, heuristics

from evolinstruct.core.progress import EvolveProgress
from evolinstruct.core.records import seed_record
from evolinstruct.evolve.rounds import Evolver
from evolinstruct.evolve.stage import build_runner
from evolinstruct.llm.request_cache import RequestCache

CODE = [h for h in heuristics.builtin_heuristics() if h.family == "code"]
SEEDS = [seed_record(f"Write function number {i}.", "x") for i in range(12)]


class Slow(ScriptedBackend):
    async def complete(self, prompt, sampling):
        await asyncio.sleep(0.15)
        return await super().complete(prompt, sampling)


def run(cache_path, rounds: int, stream=None) -> None:
    backend = Slow()
    cache = RequestCache(cache_path)
    progress = EvolveProgress(stream=stream or io.StringIO(), every=0.05)
    try:
        runner = build_runner(backend.config, backend, cache, progress=progress)
        asyncio.run(Evolver(runner, CODE, {}, 42, [filters.ShortSorry()]).run(SEEDS, 1, rounds))
    finally:
        cache.close()


def seconds(eta: str) -> int:
    h, m, s = map(int, eta.split(":"))
    return 3600 * h + 60 * m + s


def test_the_eta_waits_for_paid_records_and_ignores_cached_ones(tmp_path):
    run(tmp_path / "c.sqlite", 1)  # round 1 is now in the cache
    stream = io.StringIO()
    run(tmp_path / "c.sqlite", 2, stream)  # round 1 from the cache at once, round 2 paid (12 x 2 x 0.15 s / 16)
    lines = stream.getvalue().splitlines()
    before = [x for x in lines if "r1 12/12 r2 0/12" in x]
    assert before and all("ETA ?" in x for x in before), before  # 12 record-rounds done, none paid
    etas = [seconds(m.group(1)) for x in lines if (m := re.search(r"ETA (\d+:\d\d:\d\d)", x))]
    assert all(eta >= 1 for eta in etas)
    assert "done in" in lines[-1] and "cached 24" in lines[-1] and "sent 24" in lines[-1]
