"""Several servers behind one backend (`evolver.base_url` as a list: vLLM replicas on many
machines): each request goes to the server with the fewest requests in flight; a server that
refuses connections, or fails `max_failures` requests in a row (connection errors, timeouts,
5xx), is set aside, named once in the log, and tried again after a cool-down that doubles while
it keeps failing. Which server answered never changes the answer's cache key (the request cache
keys on the request, not the address), so outputs are byte-identical whichever one answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Server:
    url: str
    in_flight: int = 0
    #: Failures in a row (reset by an answer), requests sent and answered here.
    failures: int = 0
    sent: int = 0
    answered: int = 0
    #: Set aside until this time (monotonic clock); 0 = available.
    aside_until: float = 0.0
    cooldown: float = 0.0


class Servers:
    """Several base URLs behind one backend: `pick()` returns the server with the fewest requests in
    flight among those not set aside; report each outcome with `answered(server)` or
    `failed(server, refused)`. A server that refuses connections, or fails `max_failures` in a row,
    is set aside for `cooldown` seconds (doubling up to `max_cooldown`) and named once in the log.
    The built-in OpenAI-compatible backend uses it for `evolver.base_url` given as a list."""

    def __init__(self, urls: Sequence[str], max_failures: int = 5, cooldown: float = 5.0,
                 max_cooldown: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.servers = [Server(url) for url in urls]
        self.max_failures, self.base_cooldown, self.max_cooldown = max_failures, cooldown, max_cooldown
        self.clock = clock

    def __len__(self) -> int:
        return len(self.servers)

    def available(self) -> list[Server]:
        now = self.clock()
        return [s for s in self.servers if s.aside_until <= now]

    def pick(self) -> Server:
        """The available server with the fewest in flight (the first listed on a tie); when every
        one is set aside, the one whose cool-down ends first (a request is never refused here)."""
        candidates = self.available() or [min(self.servers, key=lambda s: s.aside_until)]
        server = min(candidates, key=lambda s: s.in_flight)
        server.in_flight += 1
        server.sent += 1
        return server

    def answered(self, server: Server) -> None:
        server.in_flight -= 1
        server.answered += 1
        if server.aside_until:
            log.info("evolver server %s answers again", server.url)
        server.failures, server.aside_until, server.cooldown = 0, 0.0, 0.0

    def failed(self, server: Server, refused: bool = False, counts: bool = True) -> None:
        """A request to `server` failed: `refused` (no connection) sets it aside at once; other
        failures that `counts` (timeouts, 5xx) do after `max_failures` in a row."""
        server.in_flight -= 1
        if not counts and not refused:
            return
        server.failures += 1
        if len(self.servers) > 1 and (refused or server.failures >= self.max_failures) \
                and server.aside_until <= self.clock():
            first = server.cooldown == 0
            server.cooldown = min(self.max_cooldown, server.cooldown * 2 or self.base_cooldown)
            server.aside_until = self.clock() + server.cooldown
            if first:  # named once per outage, not once per failed request
                why = "refuses connections" if refused else f"failed {server.failures} requests in a row"
                log.warning("evolver server %s %s: set aside, retried in %.0f s; requests go to the other %d",
                            server.url, why, server.cooldown, len(self.servers) - 1)

    def all_aside(self) -> bool:
        return not self.available()

    def stats(self) -> dict[str, dict[str, int]]:
        """Requests sent and answered per server (for the report)."""
        return {s.url: {"sent": s.sent, "answered": s.answered} for s in self.servers}
