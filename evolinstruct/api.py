"""The public API for plugin authors: everything a plugin needs, from one module.

Import from here, not from the modules behind it, which may move::

    from evolinstruct.api import Backend, Completion, Heuristic, hookimpl

A plugin is a module with functions decorated by :data:`hookimpl`, exposed through the
``evolinstruct`` entry-point group (docs/hooks.md has one section per hook). The names below
are the contract: they keep their meaning across minor versions, and the docstrings are the
reference (docs/plugins.md is generated from them, and a test keeps the two in step).
"""

from __future__ import annotations

from evolinstruct.core.errors import EvolError, MissingSecretError, ParamsError, PluginError
from evolinstruct.core.prompting import alpaca_prompt
from evolinstruct.core.records import Record, Rejection
from evolinstruct.evaluate.benchmarks import Benchmark, BenchmarkUnavailable, Problem
from evolinstruct.evaluate.extract import DEFAULT_RULES, HUMANEVAL_RULES, MBPP_RULES, Rules, defines
from evolinstruct.evaluate.sandbox import Outcome
from evolinstruct.evolve.filters import Candidate, Filter
from evolinstruct.evolve.heuristics import Heuristic
from evolinstruct.hookspecs import hookimpl
from evolinstruct.llm import hf
from evolinstruct.llm.backends import (
    Backend,
    BatchStatus,
    Completion,
    EvolverConfig,
    ProviderError,
    RequestInfo,
    Sampling,
    current_request,
)
from evolinstruct.llm.dispatch import Control, Fatal, MalformedResponse, Retry
from evolinstruct.llm.hf import hub_offline
from evolinstruct.llm.servers import Servers
from evolinstruct.registry import Registry
from evolinstruct.testing import ScriptedBackend, default_script, evolve, registered, score_in_sandbox

__all__ = [
    # hooks
    "hookimpl",
    # records
    "Record",
    "Rejection",
    # heuristics
    "Heuristic",
    # backends: the base class, what arrives and what to return, how to fail
    "Backend",
    "EvolverConfig",
    "Sampling",
    "Completion",
    "RequestInfo",
    "current_request",
    "BatchStatus",
    "Control",
    "Retry",
    "Fatal",
    "ProviderError",
    "MalformedResponse",
    "Servers",
    # local backends: loading and generating with Hugging Face transformers
    "hf",
    "hub_offline",
    # filters
    "Filter",
    "Candidate",
    # benchmarks
    "Benchmark",
    "Problem",
    "BenchmarkUnavailable",
    "alpaca_prompt",
    "defines",
    "Rules",
    "DEFAULT_RULES",
    "HUMANEVAL_RULES",
    "MBPP_RULES",
    # errors a plugin may raise (or see)
    "EvolError",
    "MissingSecretError",
    "ParamsError",
    "PluginError",
    # the plugin registry (what the evol_registry fixture and `registered` hand out)
    "Registry",
    # testing helpers (pytest fixtures wrapping them: evolinstruct.pytest_plugin)
    "ScriptedBackend",
    "default_script",
    "registered",
    "evolve",
    "score_in_sandbox",
    "Outcome",
]
