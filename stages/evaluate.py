"""Stage `evaluate`: generate answers to each benchmark with the fine-tuned model, run them in the
sandbox, and score pass@k with the unbiased estimator.

`evaluate.protocol` names how answers are drawn, as WizardCoder reported them:
* `greedy` (default): one greedy answer per problem, pass@1 = the share solved;
* `paper_sampled`: n=20 samples at temperature 0.2, top_p 0.95, pass@1 by the unbiased estimator
  (the paper's text; its repository's scripts use n=200, which `custom` expresses);
* `custom`: `n_samples`, `temperature`, `top_p` and `k` as given.
`max_new_tokens: 0` is the published scripts' 2048 for every protocol; any other value replaces it
and is named in the metrics' protocol label.

Writes data/eval/<benchmark>.jsonl (one line per sample: task_id, sample, completion, passed,
result ("passed", "timed out" or "failed: <reason>"), the raw answer, and `cut`: what the
extraction removed), metrics/evaluate.json (the headline: pass@k per benchmark with the protocol,
prompt template version and problem set named next to it), reports/evaluate.json (the detail:
settings, counts and timings per benchmark), and plots/evaluate.json, plots/ablation.json.
Params: the `evaluate` group.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.core.errors import ParamsError
from evolinstruct.core.params import (
    DEFAULT_PARAMS,
    EvaluateParams,
    read_group,
    read_params,
)
from evolinstruct.core.progress import Progress
from evolinstruct.core.stage import run_stage
from evolinstruct.evaluate.benchmarks import describe, prompt_for
from evolinstruct.evaluate.extract import extract
from evolinstruct.evaluate.generation import GenerationSettings, Generator
from evolinstruct.evaluate.passk import mean_pass_at_k
from evolinstruct.evaluate.sandbox import Limits
from evolinstruct.evaluate.scoring import score_programs
from evolinstruct.llm.hf import check_option_paths
from evolinstruct.registry import get_registry, plugin_code, prepare

log = logging.getLogger(__name__)
REPORT = Path("reports/evaluate.json")
#: The published scripts' generation limit.
PUBLISHED_MAX_NEW_TOKENS = 2048
#: protocol -> (n_samples, temperature, top_p, k)
PROTOCOLS: dict[str, tuple[int, float, float, list[int]]] = {
    "greedy": (1, 0.0, 1.0, [1]),
    "paper_sampled": (20, 0.2, 0.95, [1]),
}


@dataclass(frozen=True)
class Protocol:
    name: str
    n: int
    temperature: float
    top_p: float
    k: list[int]
    max_new_tokens: int

    @property
    def label(self) -> str:
        """The protocol's name, plus any departure from the published generation limit."""
        suffix = f"+max_new_tokens={self.max_new_tokens}" if self.max_new_tokens != PUBLISHED_MAX_NEW_TOKENS else ""
        if self.name == "custom":
            return f"custom(n={self.n},T={self.temperature},top_p={self.top_p}){suffix}"
        return self.name + suffix


def resolve_protocol(params: EvaluateParams, source: str = str(DEFAULT_PARAMS)) -> Protocol:
    """The sampling settings `params.protocol` stands for; the custom keys are refused with another
    protocol, so a run never silently ignores a value the user set."""
    max_new = params.max_new_tokens or PUBLISHED_MAX_NEW_TOKENS
    if params.protocol == "custom":  # the schema checked the ranges and the choice
        return Protocol("custom", params.n_samples, params.temperature, params.top_p, list(params.k), max_new)
    defaults = EvaluateParams()
    for key in ("n_samples", "temperature", "top_p", "k"):
        if getattr(params, key) != getattr(defaults, key):
            raise ParamsError(source, f"evaluate.{key}", f"{getattr(params, key)!r} is set, but protocol "
                              f"{params.protocol!r} fixes it", "set evaluate.protocol: custom to choose it")
    n, temperature, top_p, k = PROTOCOLS[params.protocol]
    return Protocol(params.protocol, n, temperature, top_p, list(k), max_new)


def evaluate_benchmark(name: str, params: EvaluateParams, protocol: Protocol, generator: Generator
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headline metrics, detail) for one benchmark."""
    benchmark = get_registry().pick("benchmark", name)
    options = params.benchmark_options.get(name, {})
    with plugin_code("benchmark", name):  # a benchmark's bug stops the stage, naming its plugin
        problems = benchmark.load(options)
        if params.limit:
            problems = problems[: params.limit]
        labels = describe(benchmark, options)
        prompts = [prompt_for(benchmark, p) for p in problems]
    progress = Progress(f"{name} generate", len(prompts) * protocol.n)
    settings = GenerationSettings(protocol.max_new_tokens, protocol.temperature, protocol.top_p, tuple(params.stop),
                                  params.batch_size, params.seed, protocol.n, params.compile)
    started = time.monotonic()
    answers = generator.generate(prompts, settings, keys=[p.task_id for p in problems], on_batch=progress.advance)
    generate_seconds = time.monotonic() - started
    rows, programs = [], []
    for problem, samples in zip(problems, answers, strict=True):
        for index, answer in enumerate(samples):
            extraction = extract(answer, problem.entry_point)
            rows.append({"task_id": problem.task_id, "sample": index, "completion": extraction.code,
                         "answer": answer, "cut": extraction.cut})
            with plugin_code("benchmark", name):
                programs.append(benchmark.program(problem, extraction.code))
    counts, outcomes = score_programs(f"{name} score", rows, programs, paths.EVAL / f"{name}.jsonl",
                                      Limits(timeout=params.timeout), params.workers)
    results = Counter("passed" if o.passed else "timed out" if o.result == "timed out" else "failed" for o in outcomes)
    scores = {k: round(v, 6) for k, v in mean_pass_at_k(counts, protocol.k).items()}
    log.info("%s: %s over %d problems (protocol %s, prompt %s, set %s)", name,
             ", ".join(f"{k}={v:.4f}" for k, v in scores.items()), len(problems), protocol.label, labels.get("prompt"),
             labels.get("set"))
    headline = {**scores, "problems": len(problems), "protocol": protocol.label, **labels}
    detail = {**headline, "samples": len(rows), "passed": results["passed"], "failed": results["failed"],
              "timed_out": results["timed out"], "samples_cut": sum(1 for r in rows if r["cut"]),
              "generate_seconds": round(generate_seconds, 2), "engine": generator.engine,
              "settings": {"n": protocol.n, "temperature": protocol.temperature, "top_p": protocol.top_p,
                           "k": protocol.k, "max_new_tokens": protocol.max_new_tokens, "seed": params.seed}}
    return headline, detail


def main() -> None:
    registry = prepare(("benchmark",))
    params = read_group(EvaluateParams, "evaluate")
    protocol = resolve_protocol(params)
    check_option_paths("evaluate.benchmark_options", params.benchmark_options)  # before the model loads
    generator = Generator(str(paths.SFT_MODEL), params.engine, params.device)
    metrics, report = {}, {}
    for name in params.benchmarks:
        metrics[name], report[name] = evaluate_benchmark(name, params, protocol, generator)
    write_json(paths.METRICS / "evaluate.json",
               {**metrics, "plugins": registry.used(("benchmark", name) for name in params.benchmarks)})
    write_json(REPORT, report)
    # One row per benchmark and k, for `dvc plots`.
    write_json(paths.PLOTS / "evaluate.json", [
        {"benchmark": name, "metric": key, "value": value, "protocol": scores["protocol"]}
        for name, scores in metrics.items() for key, value in scores.items() if key.startswith("pass@")
    ])
    # The paper's figure across experiments: each experiment contributes its point(s) of pass@1
    # against rounds (and heuristic family); `dvc plots diff <experiments>` overlays them.
    everything = read_params()
    rounds, family = everything.rounds, everything.evolve.family
    write_json(paths.PLOTS / "ablation.json", [
        {"rounds": rounds, "family": family, "benchmark": name, "pass@1": scores.get("pass@1"),
         "protocol": scores["protocol"]}
        for name, scores in metrics.items()
    ])


if __name__ == "__main__":
    run_stage("evaluate", main)
