"""Several evolver servers (`evolver.base_url` as a list), with the real OpenAI SDK against two
loopback servers: requests spread over both, one dies mid-run, the run finishes on the other
with byte-identical output, and the dead one is named once in the log."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from evolinstruct.plugins.api_backends import OpenAICompatibleBackend
from loopback import FakeLLMServer, evolver_reply
from plugins_under_test import filters, heuristics

from evolinstruct.core.params import EvolverConfig
from evolinstruct.core.records import seed_record
from evolinstruct.evolve.rounds import Evolver
from evolinstruct.evolve.stage import build_runner
from evolinstruct.llm.request_cache import RequestCache
from evolinstruct.llm.servers import Servers

CODE = [h for h in heuristics.builtin_heuristics() if h.family == "code"]
RULES = [filters.CopiedPromptWords(), filters.ShortSorry(), filters.OnlyStopWords(), filters.EqualityJudge()]
SEEDS = [seed_record(f"Write function number {i} of the statistics library.", "x") for i in range(120)]


def evolve(tmp_path, urls: list[str], name: str):
    """Two rounds over SEEDS: (every attempt as JSON lines, seconds, the backend's servers)."""
    config = EvolverConfig(backend="openai_compatible", model="m", base_url=[u + "/v1" for u in urls],
                           max_concurrency=16, retry_base_delay=0.05, retry_max_delay=0.5, hedge_after=0)
    backend = OpenAICompatibleBackend(config)
    cache = RequestCache(tmp_path / f"{name}.sqlite")

    async def go():
        try:
            return await Evolver(build_runner(config, backend, cache), CODE, {}, 42, RULES).run(SEEDS, 1, 2)
        finally:
            await backend.aclose()

    started = time.monotonic()
    attempts, _, stats = asyncio.run(go())
    seconds = time.monotonic() - started
    cache.close()
    lines = [json.dumps(r.to_json(), sort_keys=True) for k in (1, 2) for r in attempts[k]]
    assert stats[1].failed == stats[2].failed == 0
    return lines, seconds, backend.servers


def answered(server: FakeLLMServer) -> int:
    return sum(server.answered.values())


def test_two_servers_share_the_work_and_one_dying_mid_run_changes_nothing_but_the_time(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="evolinstruct.llm.servers")
    with FakeLLMServer(reply=evolver_reply, latency=0.02) as only:
        reference, one_server_s, _ = evolve(tmp_path, [only.url], "one")
    with FakeLLMServer(reply=evolver_reply, latency=0.02) as a, FakeLLMServer(reply=evolver_reply, latency=0.02) as b:
        both, both_s, servers = evolve(tmp_path, [a.url, b.url], "both")
        shared = answered(a), answered(b)
    with FakeLLMServer(reply=evolver_reply, latency=0.02) as a, FakeLLMServer(reply=evolver_reply, latency=0.02) as b:
        def kill_a_midway() -> None:
            while answered(a) < 180:
                time.sleep(0.005)
            a.kill()

        killer = threading.Thread(target=kill_a_midway, daemon=True)
        killer.start()
        survived, dead_s, dead_servers = evolve(tmp_path, [a.url, b.url], "dead")
        killer.join(5)
        after_kill = answered(a), answered(b)
    requests = len(reference)  # about 3 per attempt
    print(f"two servers: {shared[0]} + {shared[1]} answers in {both_s:.2f} s (one server: {one_server_s:.2f} s); "
          f"server A killed after {after_kill[0]} answers: B answered {after_kill[1]}, {dead_s:.2f} s; "
          f"per server: {dead_servers.stats()}")
    assert both == reference and survived == reference  # byte-identical whichever server answered
    assert min(shared) > 0.3 * sum(shared)  # the least busy server gets the next request
    assert a.dead and after_kill[0] >= 180 and after_kill[1] > 0
    assert sum(after_kill) >= requests
    named = [r.getMessage() for r in caplog.records if a.url in r.getMessage() and "set aside" in r.getMessage()]
    assert len(named) == 1, named  # named once, however many requests met it
    assert dead_s < 3 * both_s + 2


def test_a_server_that_keeps_failing_is_set_aside_then_tried_again():
    now = [0.0]
    servers = Servers(["http://a", "http://b"], max_failures=3, cooldown=5.0, clock=lambda: now[0])
    a, b = servers.servers
    for _ in range(3):  # nothing in flight: the first listed is picked; it fails three times in a row
        assert servers.pick() is a
        servers.failed(a, counts=True)
    assert servers.available() == [b]
    held = servers.pick()
    assert held is b and servers.pick() is b  # a is set aside: everything goes to b, however busy
    now[0] = 5.1
    assert servers.pick() is a  # tried again after the cool-down (and least busy)
    servers.answered(a)
    assert a.failures == 0 and a.aside_until == 0
    servers.failed(b, refused=True)  # a refused connection sets a server aside at once
    assert servers.available() == [a]
