"""Progress lines for long work: done/total, rate, ETA and counters, on stderr.

On a terminal the evolve stage redraws one live line; elsewhere (CI, `dvc repro` logs) it prints
plain lines at a steady interval, so a hang shows as lines whose counts stop moving, never as
silence or an "ETA 0:00:00". Rates count only work that was done (requests sent, items
processed), over a recent window, never cache hits, which arrive thousands per second.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from typing import Any, Protocol, TextIO


class InFlight(Protocol):
    """What the progress line reads of the request sender (`llm.dispatch.Sender` is one); a
    protocol, so that core imports nothing from llm."""

    in_flight: dict[int, float]
    retries: dict[str, int]
    hedges: int

    def oldest_in_flight(self) -> float: ...


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


class Progress:
    """done/total with a rate and ETA, for a fixed amount of work (one list of items).

    `skip(n)` counts work that needed no effort (a cache hit): it advances done but not the rate."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, every: float = 2.0) -> None:
        self.label, self.total, self.every = label, total, every
        self.stream = stream or sys.stderr
        self.done = 0
        self.skipped = 0
        self.counters: dict[str, int] = {}
        self.started = self._last = time.monotonic()

    def add(self, counter: str, n: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + n

    def skip(self, n: int, counter: str = "cache hits") -> None:
        self.done += n
        self.skipped += n
        self.add(counter, n)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every or self.done >= self.total:
            self._last = now
            self.emit()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1.0)  # no "3242226.8/s" from the first microseconds
        rate = (self.done - self.skipped) / elapsed
        left = self.total - self.done
        eta = f"ETA {_clock(max(1.0, left / rate))}" if left > 0 and rate > 0 else ("ETA ?" if left > 0 else "done")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        extra = "".join(f" | {name} {value}" for name, value in sorted(self.counters.items()))
        return f"{self.label}: {self.done}/{self.total} ({pct:.0f}%) {rate:.1f}/s {eta}{extra}"

    def emit(self) -> None:
        print(self.line(), file=self.stream, flush=True)


class EvolveProgress:
    """The evolve stage's one progress line: records done per round, requests in flight and the
    age of the oldest, requests sent and their recent rate, cache hits, retries by reason,
    tokens and cost so far, and an ETA from the recent rate of finished record-rounds that sent
    requests (those answered from the cache finish at once and say nothing about the rest).

    A ticker task prints it every `every` seconds while the run lasts (redrawn in place on a
    terminal), whether or not anything finished, so a hang is visible as such."""

    WINDOW = 30.0  # seconds of history behind the rates and the ETA

    def __init__(self, stream: TextIO | None = None, every: float | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else (1.0 if self.tty else 10.0)
        self.quiet = quiet
        self.sender: InFlight | None = None
        self.totals: dict[int, int] = {}
        self.done: dict[int, int] = {}
        self.stats: dict[int, Any] = {}
        self.requests = self.hits = self.failures = self.tokens = 0
        #: Record-rounds finished that sent requests (the ETA's pace: cached ones take no time).
        self.paid = 0
        self.cost = 0.0
        self.counters: dict[str, int] = {}
        self.started = time.monotonic()
        self._history: deque[tuple[float, int, int]] = deque()  # (time, paid record-rounds done, requests sent)
        self._ticker: asyncio.Task | None = None

    # -- what the engine reports ------------------------------------------------------------------
    def begin(self, totals: dict[int, int], stats: dict[int, Any]) -> None:
        self.totals, self.stats = dict(totals), stats
        self.done = {k: 0 for k in totals}
        self.started = time.monotonic()
        self._history.clear()
        self._history.append((self.started, self.paid, self.requests))
        if not self.quiet:
            try:
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
            except RuntimeError:
                self._ticker = None

    def end(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
            self.emit(final=True)

    def record_done(self, round: int, paid: bool = True) -> None:
        """A record-round finished; `paid` when any of its requests was sent (not all from the cache)."""
        self.done[round] = self.done.get(round, 0) + 1
        self.paid += paid

    def sent(self, tokens: int, cost: float, failed: bool = False) -> None:
        self.requests += 1
        self.failures += failed
        self.tokens += tokens
        self.cost += cost

    def cached(self) -> None:
        self.hits += 1

    def add(self, counter: str, n: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + n

    # -- the line ---------------------------------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.emit()

    def _rates(self, now: float) -> tuple[float, float]:
        """(paid record-rounds per second, requests sent per second) over the recent window: the
        record-rounds that sent requests, since those answered from the cache say nothing about
        the pace of the rest."""
        finished = self.paid
        self._history.append((now, finished, self.requests))
        while len(self._history) > 2 and now - self._history[1][0] >= self.WINDOW:
            self._history.popleft()
        then, finished_then, requests_then = self._history[0]
        span = now - then
        if span <= 0:
            return 0.0, 0.0
        return (finished - finished_then) / span, (self.requests - requests_then) / span

    def line(self) -> str:
        now = time.monotonic()
        record_rate, request_rate = self._rates(now)
        rounds = " ".join(f"r{k} {self.done.get(k, 0)}/{n}" for k, n in self.totals.items())
        parts = [f"evolve: {rounds}" if rounds else "evolve"]
        sender = self.sender
        if sender is not None:
            parts.append(f"in flight {len(sender.in_flight)}"
                         + (f" (oldest {sender.oldest_in_flight():.1f}s)" if sender.in_flight else ""))
        parts.append(f"sent {self.requests} ({request_rate:.1f}/s)")
        parts.append(f"cached {self.hits}")
        if self.failures:
            parts.append(f"failed {self.failures}")
        retries = dict(sender.retries) if sender is not None else {}
        if retries:
            parts.append(f"retries {sum(retries.values())} (" + ", ".join(f"{r} {n}" for r, n in sorted(retries.items())) + ")")
        if sender is not None and sender.hedges:
            parts.append(f"hedged {sender.hedges}")
        parts += [f"{name} {value}" for name, value in sorted(self.counters.items())]
        parts.append(f"tokens {_count(self.tokens)}")
        parts.append(f"${self.cost:.2f}")
        left = sum(self.totals.values()) - sum(self.done.values())
        if left <= 0:
            parts.append(f"done in {_clock(now - self.started)}")
        elif record_rate > 0:
            parts.append(f"ETA {_clock(max(1.0, left / record_rate))}")
        else:
            parts.append(f"ETA ? (no record that sent requests finished in the last "
                         f"{min(now - self.started, self.WINDOW):.0f}s)")
        return " | ".join(parts)

    def break_line(self) -> None:
        """On a terminal, end the live line so that a log message can follow on its own line."""
        if self.tty and not self.quiet:
            self.emit(final=True)

    def emit(self, final: bool = False) -> None:
        if self.quiet:
            return
        line = self.line()
        if self.tty:
            print(f"\r\x1b[2K{line}", end="\n" if final else "", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)
