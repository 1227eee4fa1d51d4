"""The plugin registry: loads plugins from entry points and gives core code typed access to them.

Core code never calls ``pm.hook`` itself (the tox 4 pattern): it asks ``get_registry()`` for
``heuristics()``, ``backends()``, ``filters()`` or ``benchmarks()`` and gets plain dicts keyed by
name. Loading rules:

* Every entry point in the ``evolinstruct`` group is a plugin, the built-ins included.
* A plugin that fails to import, or whose hook raises, is reported with a warning naming it and
  its distribution, and skipped. ``EVOLINSTRUCT_STRICT_PLUGINS=1`` makes that fatal.
* ``EVOLINSTRUCT_DISABLE_PLUGINS=name1,name2`` skips plugins by entry-point name.
* Two plugins registering the same name for the same kind is always an error naming both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from evolinstruct import hookspecs
from evolinstruct.core.errors import EvolError

log = logging.getLogger(__name__)

ENV_DISABLE = "EVOLINSTRUCT_DISABLE_PLUGINS"
ENV_STRICT = "EVOLINSTRUCT_STRICT_PLUGINS"

#: kind -> hook name; the kinds are what `evol plugins` lists.
HOOKS = {
    "heuristic": "register_heuristics",
    "backend": "register_backends",
    "filter": "register_filters",
    "benchmark": "register_benchmarks",
}


class PluginError(EvolError):
    """A plugin could not be loaded or contributed a clashing name."""


@dataclass
class PluginInfo:
    """What `evol plugins` shows about one plugin."""

    name: str
    distribution: str | None = None  # "name version", None for plugins registered in-process
    status: str = "loaded"  # loaded | disabled | broken
    error: str | None = None
    registers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"plugin '{self.name}' ({self.distribution or 'registered in-process'})"


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def _strict() -> bool:
    return os.environ.get(ENV_STRICT, "").lower() in {"1", "true", "yes"}


class Registry:
    """Typed facade over the pluggy plugin manager."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    # --- loading --------------------------------------------------------------------------
    def load_entry_points(self, group: str = hookspecs.PROJECT_NAME) -> None:
        disabled = _env_list(ENV_DISABLE)
        for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else None
            if ep.name in self.infos:
                raise PluginError(
                    f"two plugins are named '{ep.name}': {self.infos[ep.name].distribution} and {dist}",
                    "uninstall one of the two distributions",
                )
            info = PluginInfo(name=ep.name, distribution=dist)
            self.infos[ep.name] = info
            if ep.name in disabled:
                info.status = "disabled"
                self.pm.set_blocked(ep.name)
                continue
            try:
                self.pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a third party's bug must not take the pipeline down
                self._broken(info, f"failed to load: {type(exc).__name__}: {exc}")

    def register(self, plugin: Any, name: str) -> None:
        """Register an in-process plugin object or module (tests, notebooks)."""
        self.pm.register(plugin, name=name)
        self.infos[name] = PluginInfo(name=name)

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.infos.pop(name, None)

    def _broken(self, info: PluginInfo, problem: str) -> None:
        info.status, info.error = "broken", problem
        if _strict():
            raise PluginError(f"{info.source} {problem}")
        log.warning("skipping %s: %s (set %s=1 to make this fatal)", info.source, problem, ENV_STRICT)
        if self.pm.get_plugin(info.name) is not None:
            self.pm.unregister(name=info.name)

    # --- collecting -----------------------------------------------------------------------
    def collect(self, kind: str) -> dict[str, Any]:
        """Call every plugin's hook for `kind` and return {name: object}, checking for clashes."""
        hook = getattr(self.pm.hook, HOOKS[kind])
        found: dict[str, Any] = {}
        owner: dict[str, PluginInfo] = {}
        for impl in list(hook.get_hookimpls()):
            info = self.infos.setdefault(impl.plugin_name, PluginInfo(name=impl.plugin_name))
            contributed: list[Any] = []
            try:
                impl.function(**{arg: contributed.append for arg in impl.argnames})
                names = [self._name_of(obj, kind, info) for obj in contributed]
            except PluginError:
                raise
            except Exception as exc:
                self._broken(info, f"failed in {HOOKS[kind]}: {type(exc).__name__}: {exc}")
                continue
            for name, obj in zip(names, contributed, strict=True):
                if name in found:
                    raise PluginError(
                        f"{kind} '{name}' is registered twice: by {owner[name].source} and by {info.source}",
                        f"disable one with {ENV_DISABLE}=<plugin name>",
                    )
                found[name], owner[name] = obj, info
            info.registers[kind] = sorted(names)
        return dict(sorted(found.items()))

    @staticmethod
    def _name_of(obj: Any, kind: str, info: PluginInfo) -> str:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"registered a {kind} without a string 'name': {obj!r}")
        return name

    def heuristics(self) -> dict[str, Any]:
        return self.collect("heuristic")

    def backends(self) -> dict[str, Any]:
        return self.collect("backend")

    def filters(self) -> dict[str, Any]:
        return self.collect("filter")

    def benchmarks(self) -> dict[str, Any]:
        return self.collect("benchmark")

    def pick(self, kind: str, name: str) -> Any:
        """One object by name, or an error listing what is available."""
        available = self.collect(kind)
        if name not in available:
            raise PluginError(
                f"no {kind} named '{name}'",
                f"available: {', '.join(available) or 'none'}; `evol plugins` lists them with their plugins",
            )
        return available[name]

    def describe(self) -> list[PluginInfo]:
        """Every plugin with what it registers, for `evol plugins`."""
        for kind in HOOKS:
            self.collect(kind)
        return sorted(self.infos.values(), key=lambda i: i.name)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, with entry-point plugins loaded on first use."""
    global _registry
    if _registry is None:
        registry = Registry()
        registry.load_entry_points()
        _registry = registry
    return _registry


def reset_registry() -> None:
    """Forget the process-wide registry (tests that change the environment use this)."""
    global _registry
    _registry = None
