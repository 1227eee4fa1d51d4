"""An example evolinstruct plugin: a heuristic family, a backend, a filter and a benchmark, with
params of its own.

Registered through the `evolinstruct` entry-point group (see pyproject.toml); each hook calls
`register` once per object it contributes, as docs/hooks.md describes. It imports nothing from
evolinstruct but `evolinstruct.api`, the public surface (a test in evolinstruct checks this).
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, ConfigDict, Field

from evolinstruct.api import (
    Backend,
    Candidate,
    Completion,
    Heuristic,
    Problem,
    ProviderError,
    Rejection,
    Sampling,
    current_request,
    hookimpl,
)


class ExampleParams(BaseModel):
    """The `plugins.example` params group, e.g. `dvc exp run -S plugins.example.difficulty=3`."""

    model_config = ConfigDict(extra="forbid")

    #: How many new edge cases the `typed_edge_cases` heuristic asks for.
    difficulty: int = Field(default=1, ge=1, le=10)
    #: Markers that make the `todo_left` filter eliminate an evolution.
    markers: list[str] = Field(default_factory=lambda: ["TODO", "FIXME", "XXX"])


HEADER = (
    "Please increase the difficulty of the given programming test question a bit.\n\n"
    "You can increase the difficulty using, but not limited to, the following methods:\n"
)
TYPE_HINTS = ("Require a fully type-hinted solution, and ask for the behaviour on edge cases to be documented "
              "in the docstring.")


def heuristics(params: ExampleParams) -> list[Heuristic]:
    edge_cases = f"Name {params.difficulty} new edge case(s) the solution must handle, with the expected result."
    return [
        # Joins the built-in `code` family's draw at its default weight.
        Heuristic("code_type_hints", "code", f"{HEADER}{TYPE_HINTS}\n\n{{instruction}}"),
        # A family of its own: `evolve.family: typed`.
        Heuristic("typed_signature", "typed", f"{HEADER}{TYPE_HINTS}\n\n{{instruction}}"),
        Heuristic("typed_edge_cases", "typed", f"{HEADER}{edge_cases}\n\n{{instruction}}"),
    ]


class TodoLeft:
    """Eliminates evolutions whose response is unfinished: it still holds one of the markers
    (`plugins.example.markers`) or a stubbed-out body."""

    name = "todo_left"

    def __init__(self, markers: list[str]) -> None:
        words = "|".join(re.escape(m) for m in markers) or r"(?!)"
        self._stub = re.compile(rf"\b({words})\b|^\s*pass\s*#|\bNotImplementedError\b", re.MULTILINE)

    def judge_prompt(self, candidate: Candidate) -> None:
        return None  # a free rule: no LLM call

    def check(self, candidate: Candidate, judgement: str | None) -> Rejection | None:
        match = self._stub.search(candidate.response)
        return Rejection(self.name, match.group(0).strip()) if match else None


class EchoBackend(Backend):
    """An offline backend for smoke tests: it rewrites an instruction by appending a requirement,
    answers with a stub function, and judges every pair "Not Equal". Deterministic, free, and no key."""

    name = "echo"

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        if not prompt.strip():
            raise ProviderError("empty prompt")  # what a provider would refuse: recorded, not retried
        request = current_request()
        kind = request.kind if request else "answer"
        tag = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:6]
        if kind == "evolve":
            instruction = prompt.rsplit("\n\n", 1)[-1]
            text = f"{instruction} Also reject inputs of the wrong type (case {tag})."
        elif kind == "judge":
            text = "Not Equal"
        else:
            text = f"def solve_{tag}(values: list[int]) -> int:\n    return sum(values)"
        text = text[: sampling.max_tokens * 4]
        return Completion(text, "stop", prompt_tokens=len(prompt) // 4, completion_tokens=len(text) // 4)


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
def params_schema():
    return ExampleParams


@hookimpl
def register_heuristics(register, params):
    for heuristic in heuristics(params):
        register(heuristic)


@hookimpl
def register_backends(register):
    register(EchoBackend)


@hookimpl
def register_filters(register, params):
    register(TodoLeft(params.markers))


@hookimpl
def register_benchmarks(register):
    register(TinyArith())
