"""Benchmarks: the problems a fine-tuned model is scored on, and how each is turned into a program.

A benchmark plugin implements `Benchmark` (`name`, `load`, `instruction`, `program`). It may also
implement, and the stages use when present:

* `prompt(problem)`: the whole prompt, when a template is not the paper's Alpaca prompt around
  `instruction(problem)` (e.g. bigcode-evaluation-harness's docstring prompt for MBPP);
* `contamination_problems(options)`: every problem of the benchmark that could be evaluated (all
  splits), for decontamination; `load` gives only the evaluated split;
* `rules(problem)`: how the published scripts read its raw answers (`extract.Rules`: which part
  of the answer, tabs, fence end, cut markers) for the `wizardcoder` post-processing and the
  others; default: the answer read on its own, nothing undone;
* `describe(options)`: labels written next to every score (prompt template version, problem set),
  so two runs are never compared across templates or sets by mistake.

`prompt_for`, `contamination_problems` and `describe` below apply the defaults for plugins that
implement only the required methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from evolinstruct.core.errors import EvolError
from evolinstruct.evaluate.extract import DEFAULT_RULES, Rules


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: ``task_id`` (e.g. "HumanEval/0", "MBPP/11"), the ``prompt`` shown to
    the model, the ``test`` code, the ``entry_point`` function name, an optional ``reference``
    solution, and ``extra`` fields of your own. Decontamination matches training records against
    ``prompt`` and ``reference``."""

    task_id: str
    #: The problem statement (HumanEval: the signature and docstring; MBPP: the text).
    prompt: str
    #: Test code, run after the model's code (MBPP: test_setup_code, imports and asserts).
    test: str
    entry_point: str
    #: The reference ("canonical") solution.
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


class BenchmarkUnavailable(EvolError):
    """A benchmark's data cannot be had here (offline and not cached, no local file): one line
    naming the benchmark and where to get the data."""

    def __init__(self, name: str, source: str, where: str) -> None:
        super().__init__(f"benchmark '{name}': its data is not available here (no network and no local copy)",
                         f"{source}, put it under data/benchmarks/ and set evaluate.benchmark_options.{name}.path")
        self.name, self.source, self.where = name, source, where


def prompt_for(benchmark: Any, problem: Problem) -> str:
    """The full prompt the model answers: the benchmark's own, else the Alpaca prompt around its instruction."""
    if hasattr(benchmark, "prompt"):
        return benchmark.prompt(problem)
    from evolinstruct.core.prompting import alpaca_prompt

    return alpaca_prompt(benchmark.instruction(problem))


def rules_for(benchmark: Any, problem: Problem) -> Rules:
    """How answers to `problem` are read (the benchmark's `rules`, else `DEFAULT_RULES`)."""
    if hasattr(benchmark, "rules"):
        return benchmark.rules(problem)
    return DEFAULT_RULES


def contamination_problems(benchmark: Any, options: Mapping[str, Any]) -> list[Problem]:
    """Every problem of `benchmark` that decontamination must check against (all splits when the plugin says so)."""
    if hasattr(benchmark, "contamination_problems"):
        return benchmark.contamination_problems(options)
    return benchmark.load(options)


def describe(benchmark: Any, options: Mapping[str, Any]) -> dict[str, str]:
    """Labels (`prompt`: template version, `set`: which problems) for the metrics next to each score."""
    if hasattr(benchmark, "describe"):
        return dict(benchmark.describe(options))
    return {"prompt": "alpaca", "set": "default"}
