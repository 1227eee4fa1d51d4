"""Filter plugins that take time, for the plugin pool tests (importable by name, so that a
process pool's workers can unpickle them)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from evolinstruct.core.records import Rejection


@dataclass(frozen=True)
class SlowFilter:
    """Takes `seconds` per record (a tokenizer, a classifier, a linter), or `hang` seconds for
    instructions containing `hang_on`; rejects nothing."""

    name: str = "slow"
    seconds: float = 0.2
    hang_on: str = ""
    hang: float = 0.0

    def judge_prompt(self, candidate) -> None:
        return None

    def check(self, candidate, judgement):
        time.sleep(self.hang if self.hang_on and self.hang_on in candidate.instruction else self.seconds)
        return None


@dataclass(frozen=True)
class ProcessFilter:
    """Declares its checks CPU-bound: it runs in a worker process and says which one."""

    name: str = "in_process"
    runs_in: str = "process"

    def judge_prompt(self, candidate) -> None:
        return None

    def check(self, candidate, judgement):
        sum(i * i for i in range(20_000))  # some pure-Python work
        return Rejection(self.name, f"pid {os.getpid()}") if "number 1" in candidate.instruction else None
