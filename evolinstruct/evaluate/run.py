"""The evaluate stage's work: answer each benchmark with the fine-tuned model, post-process the
answers, run them in the sandbox, and score pass@k with the unbiased estimator.

`evaluate.protocol` names how answers are drawn, as WizardCoder reported them:
* `greedy` (default): one greedy answer per problem, pass@1 = the share solved;
* `paper_sampled`: n=20 samples at temperature 0.2, top_p 0.95, pass@1 by the unbiased estimator
  (the paper's text; its repository's scripts use n=200, which `custom` expresses);
* `custom`: `n_samples`, `temperature`, `top_p` and `k` as given.
Every protocol bounds prompt + answer at 2048 tokens, as the published scripts' `max_length=2048`
does; `max_new_tokens` (any value but 0) bounds the answer instead and is named in the protocol label.

`evaluate.postprocess` names how a raw answer becomes the code that runs (`extract.MODES`):
`wizardcoder` (the published scripts' rules, default), `evalplus` or `lenient`.

Writes data/eval/<benchmark>.jsonl (one line per sample: task_id, sample, the `prompt` the model
saw, its raw `answer`, the `completion` that ran, `cut` (what post-processing removed), passed,
result ("passed", "timed out" or "failed: <reason>")), metrics/evaluate.json (pass@k per benchmark
with protocol, post-processing, prompt template and problem set named next to it),
reports/evaluate.json (settings, counts and timings per benchmark), plots/evaluate.json and
plots/ablation.json.
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
from evolinstruct.core.params import DEFAULT_PARAMS, EvaluateParams
from evolinstruct.core.plugin_code import plugin_code
from evolinstruct.core.progress import Progress
from evolinstruct.evaluate.benchmarks import Problem, describe, prompt_for, rules_for
from evolinstruct.evaluate.extract import postprocess
from evolinstruct.evaluate.generation import GenerationSettings, Generator
from evolinstruct.evaluate.passk import mean_pass_at_k
from evolinstruct.evaluate.sandbox import Limits
from evolinstruct.evaluate.scoring import score_programs

log = logging.getLogger(__name__)
REPORT = Path("reports/evaluate.json")
#: The published scripts' `max_length` (prompt + answer, in tokens).
PUBLISHED_MAX_LENGTH = 2048
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
    #: Tokens per answer when set (a departure from the published protocol); 0 = `max_length` bounds.
    max_new_tokens: int = 0
    #: Prompt + answer, in tokens, as upstream's `max_length`.
    max_length: int = PUBLISHED_MAX_LENGTH

    @property
    def label(self) -> str:
        """The protocol's name, plus any departure from the published length bound."""
        suffix = f"+max_new_tokens={self.max_new_tokens}" if self.max_new_tokens else ""
        if self.name == "custom":
            return f"custom(n={self.n},T={self.temperature},top_p={self.top_p}){suffix}"
        return self.name + suffix


def resolve_protocol(params: EvaluateParams, source: str = str(DEFAULT_PARAMS)) -> Protocol:
    """The sampling settings `params.protocol` stands for; the custom keys are refused with another
    protocol, so a run never silently ignores a value the user set."""
    if params.protocol == "custom":  # the schema checked the ranges and the choice
        return Protocol("custom", params.n_samples, params.temperature, params.top_p, list(params.k),
                        params.max_new_tokens)
    defaults = EvaluateParams()
    for key in ("n_samples", "temperature", "top_p", "k"):
        if getattr(params, key) != getattr(defaults, key):
            raise ParamsError(source, f"evaluate.{key}", f"{getattr(params, key)!r} is set, but protocol "
                              f"{params.protocol!r} fixes it", "set evaluate.protocol: custom to choose it")
    n, temperature, top_p, k = PROTOCOLS[params.protocol]
    return Protocol(params.protocol, n, temperature, top_p, list(k), params.max_new_tokens)


@dataclass(frozen=True)
class Ablation:
    """Where this run sits in the paper's figure (pass@1 against rounds, per heuristic family)."""

    rounds: int
    family: str


def load_benchmarks(params: EvaluateParams, registry: Any) -> dict[str, tuple[Any, list[Problem]]]:
    """Every benchmark's plugin and problems, loaded before anything is generated: a benchmark whose
    data is not here stops the stage at once (`BenchmarkUnavailable`, with the full params key)."""
    loaded = {}
    for name in params.benchmarks:
        benchmark = registry.pick("benchmark", name)
        with plugin_code("benchmark", name):  # a benchmark's bug stops the stage, naming its plugin
            problems = benchmark.load(params.benchmark_options.get(name, {}))
        loaded[name] = (benchmark, problems[: params.limit] if params.limit else problems)
    return loaded


def evaluate_benchmark(name: str, benchmark: Any, problems: list[Problem], params: EvaluateParams,
                       protocol: Protocol, generator: Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headline metrics, detail) for one benchmark."""
    options = params.benchmark_options.get(name, {})
    with plugin_code("benchmark", name):
        labels = describe(benchmark, options)
        prompts = [prompt_for(benchmark, p) for p in problems]
        rules = [rules_for(benchmark, p) for p in problems]
    progress = Progress(f"{name} generate", len(prompts) * protocol.n)
    settings = GenerationSettings(protocol.max_new_tokens, protocol.temperature, protocol.top_p, tuple(params.stop),
                                  params.batch_size, params.seed, protocol.n, params.compile,
                                  max_length=0 if protocol.max_new_tokens else protocol.max_length)
    started = time.monotonic()
    answers = generator.generate(prompts, settings, keys=[p.task_id for p in problems], on_batch=progress.advance)
    generate_seconds = time.monotonic() - started
    rows, programs = [], []
    for problem, prompt, rule, samples in zip(problems, prompts, rules, answers, strict=True):
        for index, answer in enumerate(samples):
            extraction = postprocess(answer, params.postprocess, rule, problem.entry_point, problem.prompt)
            rows.append({"task_id": problem.task_id, "sample": index, "prompt": prompt, "answer": answer,
                         "completion": extraction.code, "cut": extraction.cut})
            with plugin_code("benchmark", name):
                programs.append(benchmark.program(problem, extraction.code))
    counts, outcomes = score_programs(f"{name} score", rows, programs, paths.EVAL / f"{name}.jsonl",
                                      Limits(timeout=params.timeout), params.workers)
    results = Counter("passed" if o.passed else "timed out" if o.result == "timed out" else "failed" for o in outcomes)
    scores = {k: round(v, 6) for k, v in mean_pass_at_k(counts, protocol.k).items()}
    log.info("%s: %s over %d problems (protocol %s, post-processing %s, prompt %s, set %s)", name,
             ", ".join(f"{k}={v:.4f}" for k, v in scores.items()), len(problems), protocol.label,
             params.postprocess, labels.get("prompt"), labels.get("set"))
    headline = {**scores, "problems": len(problems), "protocol": protocol.label, "postprocess": params.postprocess,
                **labels}
    lengths = ({"max_new_tokens": protocol.max_new_tokens} if protocol.max_new_tokens
               else {"max_length": protocol.max_length})
    detail = {**headline, "samples": len(rows), "passed": results["passed"], "failed": results["failed"],
              "timed_out": results["timed out"], "samples_cut": sum(1 for r in rows if r["cut"]),
              "generate_seconds": round(generate_seconds, 2), "engine": generator.engine,
              "settings": {"n": protocol.n, "temperature": protocol.temperature, "top_p": protocol.top_p,
                           "k": protocol.k, **lengths, "seed": params.seed, "postprocess": params.postprocess}}
    return headline, detail


def evaluate(params: EvaluateParams, ablation: Ablation, registry: Any, source: str = str(DEFAULT_PARAMS)
             ) -> dict[str, Any]:
    """The whole stage for the `evaluate` params group, with `registry` (the plugins, configured
    and checked against their lock): checks everything that can fail early (protocol, option
    paths, every benchmark's data) before the model loads, then generates, scores and writes the
    outputs. Returns the headline metrics."""
    from evolinstruct.llm.hf import check_option_paths

    protocol = resolve_protocol(params, source)
    check_option_paths("evaluate.benchmark_options", params.benchmark_options)
    benchmarks = load_benchmarks(params, registry)
    generator = Generator(str(paths.SFT_MODEL), params.engine, params.device)
    metrics, report = {}, {}
    for name, (benchmark, problems) in benchmarks.items():
        metrics[name], report[name] = evaluate_benchmark(name, benchmark, problems, params, protocol, generator)
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
    write_json(paths.PLOTS / "ablation.json", [
        {"rounds": ablation.rounds, "family": ablation.family, "benchmark": name, "pass@1": scores.get("pass@1"),
         "protocol": scores["protocol"]}
        for name, scores in metrics.items()
    ])
    return metrics
