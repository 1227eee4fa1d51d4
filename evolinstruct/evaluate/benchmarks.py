"""Benchmarks: the problems a fine-tuned model is scored on, and how each is turned into a program."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: ``task_id`` (e.g. "HumanEval/0", "MBPP/11"), the ``prompt`` shown to
    the model, the ``test`` code, the ``entry_point`` function name, an optional ``reference``
    solution, and ``extra`` fields of your own. Decontamination matches training records against
    ``prompt`` and ``reference``."""

    task_id: str
    prompt: str
    test: str
    entry_point: str
    reference: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Benchmark(Protocol):
    """What a benchmark plugin registers (any object with these members; no base class needed).
    ``name`` is the value users put in ``evaluate.benchmarks``. Exceptions other than an
    ``EvolError`` stop the stage with a line naming the plugin; the traceback is in the log."""

    name: str

    def load(self, options: Mapping[str, Any]) -> list[Problem]:
        """Return the problems. ``options`` is this benchmark's entry in ``evaluate.benchmark_options``."""

    def instruction(self, problem: Problem) -> str:
        """The instruction the model answers, placed in the paper's Alpaca prompt."""

    def program(self, problem: Problem, code: str) -> str:
        """A complete Python program: the model's code followed by the problem's tests."""
