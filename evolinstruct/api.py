"""The public API for plugin authors: everything a plugin needs, from one module.

Import from here, not from the modules behind it, which may move::

    from evolinstruct.api import Backend, Completion, Heuristic, hookimpl

A plugin is a module with functions decorated by :data:`hookimpl`, exposed through the
``evolinstruct`` entry-point group (docs/hooks.md has one section per hook). The names below
are the contract: they keep their meaning across minor versions, and the docstrings are the
reference (docs/plugins.md is generated from them, and a test keeps the two in step).
"""

from __future__ import annotations

from evolinstruct.core.errors import EvolError, MissingSecretError, ParamsError
from evolinstruct.core.records import Record, Rejection
from evolinstruct.evaluate.benchmarks import Benchmark, BenchmarkUnavailable, Problem
from evolinstruct.evolve.filters import Candidate, Filter
from evolinstruct.evolve.heuristics import Heuristic
from evolinstruct.hookspecs import hookimpl
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
from evolinstruct.llm.dispatch import Control, MalformedResponse, Retry
from evolinstruct.registry import PluginError
from evolinstruct.testing import ScriptedBackend, evolve, registered

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
    "ProviderError",
    "MalformedResponse",
    # filters
    "Filter",
    "Candidate",
    # benchmarks
    "Benchmark",
    "Problem",
    "BenchmarkUnavailable",
    # errors a plugin may raise (or see)
    "EvolError",
    "MissingSecretError",
    "ParamsError",
    "PluginError",
    # testing helpers (pytest fixtures wrapping them: evolinstruct.pytest_plugin)
    "ScriptedBackend",
    "registered",
    "evolve",
]
