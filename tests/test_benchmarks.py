"""Benchmark plugins, loaded from local files in their published formats and run in the sandbox."""

import gzip
import json

import pytest
from conftest import SHARED
from evolinstruct.plugins.benchmarks import MBPP, HumanEval, HumanEvalPlus, MBPPPlus

from evolinstruct.core.errors import EvolError
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
    assert "Your code should pass these tests" in plus.instruction(problem)
    wrong = "def similar_elements(a, b):\n    return (4, 5)\n"  # passes the one MBPP test, not the plus ones
    assert verdicts(plus, [problem, problem], [problem.reference, wrong]) == [True, False]


@pytest.mark.skipif(not (SHARED / "data/mbpp/sanitized-mbpp.json").exists(), reason="no shared MBPP file")
def test_mbpp_sanitized_test_split_from_the_shared_file():
    mbpp = MBPP()
    problems = mbpp.load({"path": str(SHARED / "data/mbpp/sanitized-mbpp.json")})
    assert problems and all(11 <= int(p.task_id.split("/")[1]) <= 510 for p in problems)
    sample = problems[:20]
    assert verdicts(mbpp, sample, [p.reference for p in sample]) == [True] * len(sample)
    assert not any(verdicts(mbpp, sample, ["def nothing():\n    pass\n"] * len(sample)))


def test_a_malformed_benchmark_file_names_the_row_and_field(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({"task_id": "X/1", "prompt": "p"}) + "\n")
    with pytest.raises(EvolError, match=r"broken.jsonl: row 1: field 'canonical_solution': missing"):
        HumanEvalPlus().load({"path": str(path)})
