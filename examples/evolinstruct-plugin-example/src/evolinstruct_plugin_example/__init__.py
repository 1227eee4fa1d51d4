"""An example evolinstruct plugin: one heuristic, one filter and one benchmark.

Registered through the `evolinstruct` entry-point group (see pyproject.toml); each hook calls
`register` once per object it contributes, as docs/hooks.md describes.
"""

from __future__ import annotations

import re

from evolinstruct.evaluate.benchmarks import Problem
from evolinstruct.evolve.filters import Candidate
from evolinstruct.evolve.heuristics import Heuristic
from evolinstruct.hookspecs import hookimpl
from evolinstruct.core.records import Rejection

TYPE_HINTS_TEMPLATE = (
    "Please increase the difficulty of the given programming test question a bit.\n\n"
    "You can increase the difficulty using, but not limited to, the following methods:\n"
    "Require a fully type-hinted solution, and ask for the behaviour on edge cases to be documented "
    "in the docstring.\n\n"
    "{instruction}"
)


class TodoLeft:
    """Eliminates evolutions whose response is unfinished: it still holds TODO/FIXME markers or
    stubbed-out bodies."""

    name = "todo_left"
    _STUB = re.compile(r"\b(TODO|FIXME|XXX)\b|^\s*pass\s*#|\bNotImplementedError\b", re.MULTILINE)

    def judge_prompt(self, candidate: Candidate) -> None:
        return None  # a free rule: no LLM call

    def check(self, candidate: Candidate, verdict: str | None) -> Rejection | None:
        match = self._STUB.search(candidate.response)
        return Rejection(self.name, match.group(0).strip()) if match else None


TINY_PROBLEMS = [
    ("tiny_arith/0", "def add(a: int, b: int) -> int:\n    \"\"\"Return a + b.\"\"\"\n",
     "assert add(2, 3) == 5\nassert add(-1, 1) == 0", "add", "    return a + b\n"),
    ("tiny_arith/1", "def square(x: int) -> int:\n    \"\"\"Return x squared.\"\"\"\n",
     "assert square(4) == 16\nassert square(-3) == 9", "square", "    return x * x\n"),
    ("tiny_arith/2", "def is_even(n: int) -> bool:\n    \"\"\"Whether n is even.\"\"\"\n",
     "assert is_even(4)\nassert not is_even(7)", "is_even", "    return n % 2 == 0\n"),
    ("tiny_arith/3", "def clamp(x: int, lo: int, hi: int) -> int:\n    \"\"\"x limited to [lo, hi].\"\"\"\n",
     "assert clamp(5, 0, 3) == 3\nassert clamp(-2, 0, 3) == 0\nassert clamp(2, 0, 3) == 2", "clamp",
     "    return max(lo, min(hi, x))\n"),
    ("tiny_arith/4", "def total(xs: list[int]) -> int:\n    \"\"\"The sum of xs.\"\"\"\n",
     "assert total([1, 2, 3]) == 6\nassert total([]) == 0", "total", "    return sum(xs)\n"),
]


class TinyArith:
    """Five one-line functions: a benchmark for smoke tests, not for claims."""

    name = "tiny_arith"

    def load(self, options):
        problems = [Problem(t, p, test, entry, ref) for t, p, test, entry, ref in TINY_PROBLEMS]
        return problems[: int(options.get("limit", len(problems)))]

    def instruction(self, problem: Problem) -> str:
        return f"Complete this Python function:\n{problem.prompt}"

    def program(self, problem: Problem, code: str) -> str:
        if re.search(rf"^def\s+{problem.entry_point}\s*\(", code, re.MULTILINE):
            return f"{code}\n\n{problem.test}\n"
        return f"{problem.prompt}{code}\n\n{problem.test}\n"


@hookimpl
def register_heuristics(register):
    register(Heuristic("code_type_hints", "code", TYPE_HINTS_TEMPLATE))


@hookimpl
def register_filters(register):
    register(TodoLeft())


@hookimpl
def register_benchmarks(register):
    register(TinyArith())
