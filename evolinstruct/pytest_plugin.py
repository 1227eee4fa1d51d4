"""pytest fixtures for plugin authors, loaded by pytest itself (the ``pytest11`` entry point)
wherever evolinstruct is installed.

It turns on strict plugin checking (``EVOLINSTRUCT_STRICT_PLUGINS=1``) unless the environment
says otherwise, so a misspelled hook, a broken import or a hook that raises fails the tests
instead of being skipped with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from evolinstruct.registry import ENV_STRICT, Registry, get_registry, reset_registry
from evolinstruct.testing import ScriptedBackend, evolve


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(ENV_STRICT, "1")


@pytest.fixture
def evol_registry() -> Iterator[Registry]:
    """A fresh process-wide plugin registry with the installed plugins, forgotten after the test."""
    reset_registry()
    yield get_registry()
    reset_registry()


@pytest.fixture
def register_plugin(evol_registry: Registry) -> Callable[..., Registry]:
    """``register_plugin(plugin, name="plugin_under_test")`` registers an in-process plugin for
    this test only (the registry is fresh afterwards)."""

    def register(plugin: Any, name: str = "plugin_under_test") -> Registry:
        evol_registry.register(plugin, name=name)
        return evol_registry

    return register


@pytest.fixture
def scripted_backend() -> ScriptedBackend:
    """A :class:`evolinstruct.testing.ScriptedBackend` with the default script."""
    return ScriptedBackend()


@pytest.fixture
def evolve_run(evol_registry: Registry, tmp_path: Any) -> Callable[..., Any]:
    """:func:`evolinstruct.testing.evolve` with its request cache in this test's tmp_path."""

    def run(seeds: Any, rounds: int = 1, **options: Any) -> Any:
        options.setdefault("cache", tmp_path / "requests.sqlite")
        return evolve(seeds, rounds, **options)

    return run
