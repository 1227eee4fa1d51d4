"""The evolinstruct hooks. Each docstring is the reference for its hook (docs/hooks.md mirrors it,
and a test keeps the two in step).

The ``register_*`` hooks follow the callback style of simonw/llm: the hook receives a ``register``
function and calls it once per object it contributes, and returns nothing. Hooks are called when
core code asks the plugin registry (``evolinstruct.registry.get_registry()``) for that kind of
object. A hook implementation may leave out any argument it does not use: ``register_filters(register)``
and ``register_filters(register, params)`` are both valid implementations.

Plugin authors import ``hookimpl`` and everything else from :mod:`evolinstruct.api`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "evolinstruct"  # also the entry-point group third-party packages register under

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_heuristics(register: Callable[[Any], None], params: Any) -> None:
    """Contribute evolution heuristics: the prompts that rewrite an instruction into a harder one.

    Called when the evolve stage (or `evol plugins`, `evol estimate`) first needs heuristics.

    :param register: call ``register(heuristic)`` once per heuristic, where ``heuristic`` is an
        :class:`evolinstruct.api.Heuristic`: a ``name`` (the method, unique across plugins), a
        ``family`` (``"code"`` for Code Evol-Instruct, ``"general"`` for WizardLM's in-depth and
        in-breadth prompts, or your own; params choose one with ``evolve.family``), a prompt
        ``template`` holding ``{instruction}`` and no other ``{field}``, and a default ``weight``
        for the seeded draw.
    :param params: this plugin's validated ``plugins.<name>`` params (an instance of the model
        its ``params_schema`` hook returns), or None when it declares no schema.
    :return: nothing; anything else is an error naming the plugin.

    Names must be unique across all plugins; a clash is an error naming both plugins. A template
    without ``{instruction}``, or with another ``{field}``, is an error at registration.
    """


@hookspec
def register_backends(register: Callable[[Any], None], params: Any) -> None:
    """Contribute evolver backends: the clients that send prompts to an LLM and return completions.

    Called when the evolve stage first needs a backend, before any request is sent.

    :param register: call ``register(backend_class)`` once per backend, where ``backend_class`` is
        a subclass of :class:`evolinstruct.api.Backend` with a unique class attribute ``name``
        (the value users put in ``evolver.backend``). It is constructed with the
        :class:`evolinstruct.api.EvolverConfig` built from the ``evolver`` params group, and its
        ``plugin_params`` attribute is set to this plugin's validated params before ``check_ready``.
        API backends implement ``complete`` and ``classify`` (which errors to retry); core
        dispatch supplies concurrency, RPM/TPM limits, timeouts, retries and the budget.
        Backends with a provider batch API set ``supports_batch`` and implement ``submit_batch``,
        ``poll_batch`` and ``batch_results``. Local backends override ``complete_many``.
        docs/plugins.md, "The backend contract", says what arrives and what to return.
    :param params: this plugin's validated ``plugins.<name>`` params, or None.
    :return: nothing; anything else is an error naming the plugin.

    Backends read API keys from the environment only, never from params.
    """


@hookspec
def register_filters(register: Callable[[Any], None], params: Any) -> None:
    """Contribute elimination filters: rules that reject a failed evolution.

    Called when the evolve stage first needs filters (each round's evolutions are checked before the
    pool advances) and by `evol plugins`.

    :param register: call ``register(filter)`` once per filter, where ``filter`` implements
        :class:`evolinstruct.api.Filter`: a unique ``name``, ``judge_prompt(candidate)``
        returning a prompt for the evolver LLM or ``None`` when the rule needs no LLM, and
        ``check(candidate, judgement)`` returning a :class:`evolinstruct.api.Rejection` or
        ``None`` to keep the candidate.
    :param params: this plugin's validated ``plugins.<name>`` params, or None.
    :return: nothing; anything else is an error naming the plugin.

    An exception raised by ``judge_prompt`` or ``check``, or a value of the wrong type returned
    (``True`` instead of a ``Rejection``), stops the stage with a line naming the filter and its
    distribution; the traceback is in the log. A class registered instead of an instance is an
    error at registration.
    """


@hookspec
def register_benchmarks(register: Callable[[Any], None], params: Any) -> None:
    """Contribute benchmarks: problems, their tests, and how a program is assembled for the sandbox.

    Called when the evaluate stage, the eliminate stage (decontamination), `evol eval-samples` or
    `evol plugins` first needs benchmarks.

    :param register: call ``register(benchmark)`` once per benchmark, where ``benchmark``
        implements :class:`evolinstruct.api.Benchmark`: a unique ``name``, ``load(options)``
        returning a list of :class:`evolinstruct.api.Problem`, ``instruction(problem)`` giving
        the instruction the model answers, and ``program(problem, code)`` giving the Python program
        that runs the tests in the sandbox.
    :param params: this plugin's validated ``plugins.<name>`` params, or None.
    :return: nothing; anything else is an error naming the plugin.
    """


@hookspec
def params_schema() -> Any:
    """Declare the params this plugin takes: the ``plugins.<name>`` group of params.yaml.

    Called when a stage reads params.yaml, before any ``register_*`` hook, and by `evol plugins`.
    ``<name>`` is the plugin's entry-point name. ``dvc exp run -S plugins.<name>.<key>=<value>``
    changes one, and DVC reruns the stages that use one of this plugin's objects (plugins.lock.yaml).

    :return: a pydantic ``BaseModel`` subclass whose fields all have defaults. The group is
        validated with it (a wrong type or an unknown key is an error naming ``plugins.<name>.<key>``)
        and the instance is passed as ``params`` to this plugin's ``register_*`` hooks and set as
        ``plugin_params`` on its backends. Anything other than a ``BaseModel`` subclass is an error naming
        the plugin.
    """
