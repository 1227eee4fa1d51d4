"""The evolinstruct hooks. Each docstring is the reference for its hook (docs/hooks.md mirrors it).

Every hook follows the callback style of simonw/llm: the hook receives a `register` function and
calls it once per object it contributes. Hooks are called once per process, the first time core
code asks the plugin registry (`evolinstruct.registry.get_registry()`) for that kind of object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "evolinstruct"  # also the entry-point group third-party packages register under

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_heuristics(register: Callable[[Any], None]) -> None:
    """Contribute evolution heuristics: the prompts that rewrite an instruction into a harder one.

    Called when the evolve stage (or `evol plugins`, `evol estimate`) first needs heuristics.

    :param register: call ``register(heuristic)`` once per heuristic, where ``heuristic`` is an
        :class:`evolinstruct.evolve.heuristics.Heuristic` (a ``name``, a ``family`` such as ``"code"``,
        ``"depth"`` or ``"breadth"``, a prompt ``template`` holding ``{instruction}``, and a default
        ``weight`` for the random draw).
    :return: nothing; the return value is ignored.

    Names must be unique across all plugins; a clash is an error naming both plugins.
    """


@hookspec
def register_backends(register: Callable[[Any], None]) -> None:
    """Contribute evolver backends: the clients that send prompts to an LLM and return completions.

    Called when the evolve stage first needs a backend, before any request is sent.

    :param register: call ``register(backend_class)`` once per backend, where ``backend_class`` is
        a subclass of :class:`evolinstruct.llm.backends.Backend` with a unique class attribute ``name``
        (the value users put in ``evolver.backend``). It is constructed with the
        :class:`evolinstruct.llm.backends.EvolverConfig` built from the ``evolver`` params group.
        API backends implement ``complete`` and ``classify`` (which errors to retry); core
        ``dispatch`` supplies concurrency, RPM/TPM limits, timeouts, retries and the budget.
        Backends with a provider batch API set ``supports_batch`` and implement ``submit_batch``,
        ``poll_batch`` and ``batch_results``. Local backends override ``complete_many``.
    :return: nothing; the return value is ignored.

    Backends read API keys from the environment only, never from params.
    """


@hookspec
def register_filters(register: Callable[[Any], None]) -> None:
    """Contribute elimination filters: rules that reject a failed evolution.

    Called when the evolve stage first needs filters (each round's evolutions are checked before the
    pool advances) and by `evol plugins`.

    :param register: call ``register(filter)`` once per filter, where ``filter`` implements
        :class:`evolinstruct.evolve.filters.Filter`: a unique ``name``, ``judge_prompt(candidate)``
        returning a prompt for the evolver LLM or ``None`` when the rule needs no LLM, and
        ``check(candidate, judgement)`` returning a :class:`evolinstruct.core.records.Rejection` or
        ``None`` to keep the candidate.
    :return: nothing; the return value is ignored.
    """


@hookspec
def register_benchmarks(register: Callable[[Any], None]) -> None:
    """Contribute benchmarks: problems, their tests, and how a program is assembled for the sandbox.

    Called when the evaluate stage, the eliminate stage (decontamination), `evol eval-samples` or
    `evol plugins` first needs benchmarks.

    :param register: call ``register(benchmark)`` once per benchmark, where ``benchmark``
        implements :class:`evolinstruct.evaluate.benchmarks.Benchmark`: a unique ``name``, ``load(options)``
        returning a list of :class:`evolinstruct.evaluate.benchmarks.Problem`, ``instruction(problem)`` giving
        the instruction the model answers, and ``program(problem, code)`` giving the Python program
        that runs the tests in the sandbox.
    :return: nothing; the return value is ignored.
    """
