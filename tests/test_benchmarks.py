"""Benchmark plugins, loaded from local files in their published formats and run in the sandbox."""

import gzip
import json

import pytest
from conftest import SHARED
from evolinstruct.plugins.benchmarks import MBPP, HumanEval, HumanEvalPlus, MBPPPlus

from evolinstruct.core.errors import EvolError
from evolinstruct.evaluate.benchmarks import describe, prompt_for
from evolinstruct.evaluate.sandbox import Limits, run_many

FAST = Limits(timeout=5.0)


def verdicts(benchmark, problems, completions):
    programs = [benchmark.program(p, c) for p, c in zip(problems, completions, strict=True)]
    return [o.passed for o in run_many(programs, FAST)]


def humaneval_plus_file(tmp_path):
    """Three HumanEval problems in EvalPlus's format, with extra ("plus") inputs in their tests."""
    rows = []
    for p in HumanEval().load({})[:3]:
        extra = {
            "HumanEval/0": "    assert candidate([1.0, 1.0000001], 1e-3) == True\n    assert candidate([], 1.0) == False\n",
            "HumanEval/1": "    assert candidate('') == []\n",
            "HumanEval/2": "    assert abs(candidate(1000.25) - 0.25) < 1e-9\n",
        }[p.task_id]
        rows.append({"task_id": p.task_id, "prompt": p.prompt, "canonical_solution": p.reference,
                     "entry_point": p.entry_point, "test": p.test.rstrip() + "\n" + extra})
    path = tmp_path / "HumanEvalPlus.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def test_humaneval_plus_from_a_local_file_catches_what_the_base_tests_miss(tmp_path):
    plus = HumanEvalPlus()
    problems = plus.load({"path": str(humaneval_plus_file(tmp_path))})
    assert [p.task_id for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert verdicts(plus, problems, [p.reference for p in problems]) == [True, True, True]
    # Passes HumanEval's own tests for problem 0 but not the extra empty-list input.
    sloppy = ("    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
              " for b in numbers[i + 1:]) if len(numbers) > 1 else None\n")
    base = HumanEval().load({})[0]
    assert verdicts(HumanEval(), [base], [sloppy]) == [True]
    assert verdicts(plus, [problems[0]], [sloppy]) == [False]


def mbpp_plus_rows():
    return [
        {"task_id": 2, "prompt": "Write a function to find the shared elements from the given two lists.",
         "code": "def similar_elements(test_tup1, test_tup2):\n  return tuple(set(test_tup1) & set(test_tup2))",
         "source_file": "Benchmark Questions Verification V2.ipynb", "test_imports": [],
         "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"],
         "test": "inputs = [[(3, 4, 5, 6), (5, 7, 4, 10)], [(1, 2), (3, 4)], [(), (1,)]]\n"
                 "results = [(4, 5), (), ()]\n"
                 "for inp, exp in zip(inputs, results):\n"
                 "    assert set(similar_elements(*inp)) == set(exp)\n"},
    ]


def test_mbpp_plus_from_a_local_file(tmp_path):
    path = tmp_path / "MbppPlus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in mbpp_plus_rows()))
    plus = MBPPPlus()
    (problem,) = plus.load({"path": str(path)})
    assert problem.task_id == "Mbpp/2" and problem.entry_point == "similar_elements"
    assert "Create a Python script for this problem:" in plus.instruction(problem) and "Test examples:" in plus.instruction(problem)
    wrong = "def similar_elements(a, b):\n    return (4, 5)\n"  # passes the one MBPP test, not the plus ones
    assert verdicts(plus, [problem, problem], [problem.reference, wrong]) == [True, False]


MBPP_FULL = SHARED / "data/mbpp/mbpp.jsonl"
MBPP_SANITIZED = SHARED / "data/mbpp/sanitized-mbpp.json"


@pytest.mark.skipif(not MBPP_SANITIZED.exists(), reason="no shared MBPP file")
def test_mbpp_sanitized_test_split_from_the_shared_file():
    mbpp = MBPP()
    options = {"path": str(MBPP_SANITIZED), "variant": "sanitized"}
    problems = mbpp.load(options)
    assert len(problems) == 257 and all(11 <= int(p.task_id.split("/")[1]) <= 510 for p in problems)
    assert describe(mbpp, options) == {"prompt": "wizardcoder-2023-06", "set": "sanitized-test"}
    sample = problems[:20]
    assert verdicts(mbpp, sample, [p.reference for p in sample]) == [True] * len(sample)
    assert not any(verdicts(mbpp, sample, ["def nothing():\n    pass\n"] * len(sample)))
    # The sanitized file given as the full release is refused with the fix.
    with pytest.raises(EvolError, match="field 'text': missing.*variant: sanitized"):
        mbpp.load({"path": str(MBPP_SANITIZED)})


@pytest.mark.skipif(not MBPP_FULL.exists(), reason="no shared MBPP file")
def test_mbpp_full_release_test_split_with_wizardcoders_prompt():
    mbpp = MBPP()
    problems = mbpp.load({"path": str(MBPP_FULL)})
    assert [p.task_id for p in problems] == [f"MBPP/{i}" for i in range(11, 511)]
    first = problems[0]  # MBPP/11, remove_Occ
    assert prompt_for(mbpp, first) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n"
        "\n### Instruction:\nCreate a Python script for this problem:\n\n"
        "Write a python function to remove first and last occurrence of a given character from the string.\n"
        "Test examples:\n"
        'assert remove_Occ("hello","l") == "heo"\n'
        'assert remove_Occ("abcda","a") == "bcd"\n'
        'assert remove_Occ("PHP","P") == "H"\n\n### Response:'
    )
    # Task 493's asserts are too long: upstream shows only the call signature.
    p493 = next(p for p in problems if p.task_id == "MBPP/493")
    assert "calculate_polygons(startx, starty, endx, endy, radius)" in mbpp.instruction(p493)
    assert "assert" not in mbpp.instruction(p493)
    assert describe(mbpp, {}) == {"prompt": "wizardcoder-2023-06", "set": "full-test"}


@pytest.mark.skipif(not MBPP_FULL.exists(), reason="no shared MBPP file")
def test_mbpp_bigcode_template_is_the_docstring_with_the_first_assert():
    mbpp = MBPP()
    options = {"path": str(MBPP_FULL), "template": "bigcode"}
    first = mbpp.load(options)[0]
    assert prompt_for(mbpp, first) == (
        '"""\nWrite a python function to remove first and last occurrence of a given character from the string.\n'
        'assert remove_Occ("hello","l") == "heo"\n"""\n'
    )
    assert describe(mbpp, options)["prompt"] == "bigcode"
    with pytest.raises(EvolError, match="benchmark_options.mbpp.template"):
        mbpp.load({"path": str(MBPP_FULL), "template": "mine"})


@pytest.mark.skipif(not MBPP_FULL.exists(), reason="no shared MBPP file")
def test_mbpp_test_setup_code_runs_between_the_solution_and_the_tests():
    problem = next(p for p in MBPP().load({"path": str(MBPP_FULL)}) if p.task_id == "MBPP/367")
    assert problem.test.startswith("root = Node(1)")  # it builds trees with the solution's Node class
    assert verdicts(MBPP(), [problem, problem], [problem.reference, "def is_tree_balanced(root):\n    return None\n"]
                    ) == [True, False]


@pytest.mark.skipif(not MBPP_FULL.exists(), reason="no shared MBPP file")
def test_every_canonical_solution_of_mbpp_test_and_humaneval_passes_in_the_sandbox():
    mbpp, humaneval = MBPP(), HumanEval()
    pairs = [(mbpp, p) for p in mbpp.load({"path": str(MBPP_FULL)})] + [(humaneval, p) for p in humaneval.load({})]
    assert len(pairs) == 500 + 164
    # MBPP/123's reference (amicable numbers to 9999) takes seconds on a loaded 2-core machine.
    outcomes = run_many([b.program(p, p.reference) for b, p in pairs], Limits(timeout=30.0))
    failed = [(p.task_id, o.result) for (_, p), o in zip(pairs, outcomes, strict=True) if not o.passed]
    assert failed == []


def test_a_malformed_benchmark_file_names_the_row_and_field(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({"task_id": "X/1", "prompt": "p"}) + "\n")
    with pytest.raises(EvolError, match=r"broken.jsonl: row 1: field 'canonical_solution': missing"):
        HumanEvalPlus().load({"path": str(path)})
