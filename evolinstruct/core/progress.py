"""Progress lines for long work: done/total, rate, ETA and counters, throttled, on stderr.

Plain lines rather than a redrawn bar, so the output reads the same in a terminal, in `dvc repro`
logs and in CI.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, every: float = 2.0) -> None:
        self.label, self.total, self.every = label, total, every
        self.stream = stream or sys.stderr
        self.done = 0
        self.counters: dict[str, int] = {}
        self.started = self._last = time.monotonic()

    def add(self, counter: str, n: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + n

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every or self.done >= self.total:
            self._last = now
            self.emit()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        extra = "".join(f" | {name} {value}" for name, value in sorted(self.counters.items()))
        return f"{self.label}: {self.done}/{self.total} ({pct:.0f}%) {rate:.1f}/s ETA {_clock(eta)}{extra}"

    def emit(self) -> None:
        print(self.line(), file=self.stream, flush=True)
