"""The plugin registry: loads plugins from entry points and gives core code typed access to them.

Core code never calls ``pm.hook`` itself (the tox 4 pattern): it asks ``get_registry()`` for
``heuristics()``, ``backends()``, ``filters()`` or ``benchmarks()`` and gets plain dicts keyed by
name, every object checked against its hook's contract. Loading rules:

* Every entry point in the ``evolinstruct`` group is a plugin, the built-ins included.
* A plugin that fails to import, or whose hook raises, is reported with a warning naming it and
  its distribution (with the traceback), and skipped. ``EVOLINSTRUCT_STRICT_PLUGINS=1`` makes that
  fatal; the test suite runs strict, and plugin authors' CI should too.
* A hook implementation whose name is no hook (a typo) is a warning naming the plugin, the hook
  and the closest real hook; under strict mode it is an error (pluggy's ``check_pending``, with a
  suggestion).
* ``EVOLINSTRUCT_DISABLE_PLUGINS=name1,name2`` skips plugins by entry-point name; a name that is
  no installed plugin is an error.
* Contract violations are always errors naming the plugin: two plugins registering the same name
  for the same kind, a hook returning a value, an object of the wrong type, a heuristic template
  without ``{instruction}`` or with another ``{field}``, a params schema that is not a pydantic model.

Plugin params (the ``plugins.<name>`` groups of params.yaml) are validated by each plugin's own
schema (the ``params_schema`` hook) in :meth:`Registry.configure` and passed to its hooks.
The plugin objects each stage uses, with their distributions, versions and plugin params, are
written to ``plugins.lock.yaml`` by the always-run ``plugins`` stage of dvc.yaml
(:mod:`evolinstruct.plugin_lock`); each stage reads its section as a DVC param.

Every filter and benchmark the registry hands out, and every backend it constructs, is wrapped so
that what its methods return is checked at the first call (:mod:`evolinstruct.plugin_contracts`).
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from evolinstruct import hookspecs, plugin_lock
from evolinstruct.core.errors import ParamsError, PluginError
from evolinstruct.core.plugin_code import plugin_code, plugin_failure, set_namer  # noqa: F401 (re-exported)
from evolinstruct.plugin_contracts import Checked, check_backend, registration_problem
from evolinstruct.plugin_lock import LOCK_FILE, lock_text  # noqa: F401 (re-exported)

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
PARAMS_HOOK = "params_schema"
KNOWN_HOOKS = (*HOOKS.values(), PARAMS_HOOK)


@dataclass
class PluginInfo:
    """What `evol plugins` shows about one plugin."""

    name: str
    distribution: str | None = None  # "name version", None for plugins registered in-process
    status: str = "loaded"  # loaded | disabled | broken
    error: str | None = None
    registers: dict[str, list[str]] = field(default_factory=dict)
    #: heuristic family -> the heuristics (methods) this plugin adds to it
    families: dict[str, list[str]] = field(default_factory=dict)
    #: the keys of its `plugins.<name>` params group, when it declares a schema
    params: list[str] | None = None
    project: str | None = None
    version: str | None = None
    #: problems that do not stop loading outside strict mode (a misspelled hook); the lock step refuses them
    warnings: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return f"plugin '{self.name}' ({self.distribution or 'registered in-process'})"


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def _strict() -> bool:
    return os.environ.get(ENV_STRICT, "").lower() in {"1", "true", "yes"}


def closest(name: str, candidates: Iterable[str]) -> str:
    """", did you mean 'x'?" for the closest candidate, or "" when none is close (difflib)."""
    match = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean '{match[0]}'?" if match else ""


def template_problems(template: Any) -> list[str]:
    """What is wrong with a heuristic template: no ``{instruction}``, or another ``{field}``
    (which would reach the LLM verbatim, since only ``{instruction}`` is replaced)."""
    import re

    if not isinstance(template, str):
        return [f"template must be a string, got {type(template).__name__}"]
    problems = [] if "{instruction}" in template else ["template has no {instruction} placeholder"]
    others = sorted({m for m in re.findall(r"(?<!\{)\{([A-Za-z_]\w*)\}(?!\})", template)} - {"instruction"})
    problems += [f"template has an unknown field {{{m}}} (only {{instruction}} is replaced)" for m in others]
    return problems


def _contract_problem(kind: str, obj: Any) -> tuple[str, str] | None:
    """Why `obj` cannot be registered as a `kind`, with a hint, or None when it meets the hook's
    contract as far as can be seen without calling it (its methods' results are checked at the first call)."""
    problem = registration_problem(kind, obj)
    if problem or kind != "heuristic":
        return problem
    problems = template_problems(obj.template)
    if not isinstance(obj.family, str) or not obj.family:
        problems.append("family must be a non-empty string")
    if isinstance(obj.weight, bool) or not isinstance(obj.weight, int | float) or obj.weight < 0:
        problems.append(f"weight must be a number >= 0, got {obj.weight!r}")
    if problems:
        return f"heuristic '{obj.name}': " + "; ".join(problems), "fix the heuristic (docs/hooks.md, register_heuristics)"
    return None


class Registry:
    """Typed facade over the pluggy plugin manager: what the ``evol_registry`` fixture and
    :func:`registered` hand out. A test registers an in-process plugin with ``register(plugin,
    name)``, sets its params with ``configure({"<name>": {...}})``, and gets the objects the core
    would use with ``heuristics()``, ``backends()``, ``filters()``, ``benchmarks()`` (each
    ``{name: object}``), ``pick(kind, name)`` or ``make_backend(config)``; ``describe()`` is what
    `evol plugins` shows. Filters, benchmarks and backends come wrapped: what their methods return
    is checked at the first call, as in a stage."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        #: (kind, object name) -> the plugin that registered it, filled by `collect`
        self.owners: dict[tuple[str, str], PluginInfo] = {}
        self._params: dict[str, Any] = {}  # plugin name -> validated params (a pydantic model)

    # --- loading --------------------------------------------------------------------------
    def load_entry_points(self, group: str = hookspecs.PROJECT_NAME) -> None:
        """Load and register every installed plugin of the entry-point group (the built-ins too)."""
        disabled = _env_list(ENV_DISABLE)
        entry_points = sorted(metadata.entry_points(group=group), key=lambda e: e.name)
        unknown = sorted(disabled - {ep.name for ep in entry_points})
        if unknown:
            raise PluginError(
                f"{ENV_DISABLE}: no installed plugin is named '{unknown[0]}'"
                f"{closest(unknown[0], (ep.name for ep in entry_points))}",
                "`evol plugins` lists the plugin names",
            )
        for ep in entry_points:
            project, version = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
            dist = f"{project} {version}" if ep.dist else None
            if ep.name in self.infos:
                raise PluginError(
                    f"two plugins are named '{ep.name}': {self.infos[ep.name].distribution} and {dist}",
                    "uninstall one of the two distributions",
                )
            info = PluginInfo(name=ep.name, distribution=dist, project=project, version=version)
            self.infos[ep.name] = info
            if ep.name in disabled:
                info.status = "disabled"
                self.pm.set_blocked(ep.name)
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # a third party's bug must not take the pipeline down
                self._broken(info, f"failed to load: {type(exc).__name__}: {exc}", exc)
                continue
            self._check_hook_names(info, plugin)

    def register(self, plugin: Any, name: str) -> None:
        """Register an in-process plugin object or module (tests, notebooks)."""
        self.pm.register(plugin, name=name)
        self.infos[name] = info = PluginInfo(name=name)
        try:
            self._check_hook_names(info, plugin)
        except PluginError:
            self.unregister(name)
            raise

    def unregister(self, name: str) -> None:
        """Forget the plugin `name` and what it registered."""
        self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self._params.pop(name, None)
        self.owners = {key: owner for key, owner in self.owners.items() if owner.name != name}

    def _check_hook_names(self, info: PluginInfo, plugin: Any) -> None:
        """pluggy's `check_pending` for one plugin, with the closest real hook suggested: a
        misspelled hook would otherwise never be called, silently."""
        for caller in self.pm.get_hookcallers(plugin) or []:
            mine = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin and not impl.optionalhook]
            if caller.has_spec() or not mine:
                continue
            problem = (f"{info.source} implements '{caller.name}', which is not an evolinstruct hook"
                       f"{closest(caller.name, KNOWN_HOOKS)}")
            if _strict():
                raise PluginError(problem, f"the hooks are {', '.join(KNOWN_HOOKS)} (docs/hooks.md)")
            info.warnings.append(problem)
            log.warning("%s; it will never be called (set %s=1 to make this an error)", problem, ENV_STRICT)

    def _broken(self, info: PluginInfo, problem: str, exc: BaseException | None = None) -> None:
        info.status, info.error = "broken", problem
        if _strict():
            raise PluginError(f"{info.source} {problem}") from exc
        log.warning("skipping %s: %s (set %s=1 to make this fatal)", info.source, problem, ENV_STRICT,
                    exc_info=exc)
        if self.pm.get_plugin(info.name) is not None:
            self.pm.unregister(name=info.name)

    def _info(self, plugin_name: str) -> PluginInfo:
        return self.infos.setdefault(plugin_name, PluginInfo(name=plugin_name))

    # --- params ---------------------------------------------------------------------------
    def schemas(self) -> dict[str, type]:
        """{plugin name: the pydantic model of its `plugins.<name>` params}, for plugins that declare one."""
        from pydantic import BaseModel

        found = {}
        for impl in self.pm.hook.params_schema.get_hookimpls():
            info = self._info(impl.plugin_name)
            try:
                schema = impl.function()
            except Exception as exc:
                self._broken(info, f"failed in {PARAMS_HOOK}: {type(exc).__name__}: {exc}", exc)
                continue
            if schema is None:
                continue
            if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
                raise PluginError(f"{info.source}: {PARAMS_HOOK} returned {schema!r}",
                                  "return a pydantic BaseModel subclass (the class), or None")
            info.params = sorted(schema.model_fields)
            found[impl.plugin_name] = schema
        return found

    def configure(self, group: Any, path: str = "params.yaml") -> None:
        """Validate the `plugins` params group (one mapping per plugin, by entry-point name) with
        each plugin's schema, and keep the results for its hooks. A plugin with a schema but no
        group gets the schema's defaults."""
        if group is None:
            group = {}
        if not isinstance(group, Mapping):
            raise ParamsError(path, "plugins", f"expected a mapping of plugin name to params, got {group!r}")
        schemas = self.schemas()
        disabled = {name for name, info in self.infos.items() if info.status != "loaded"}
        params: dict[str, Any] = {}
        for name, values in group.items():
            if name in disabled:
                continue  # a disabled plugin's params are not used
            if name not in schemas:
                raise ParamsError(path, f"plugins.{name}", f"no installed plugin named '{name}' takes params"
                                  f"{closest(str(name), schemas)}",
                                  f"plugins that take params: {', '.join(sorted(schemas)) or 'none'}")
            params[name] = self._validate(schemas[name], values, name, path)
        for name, schema in schemas.items():
            if name not in params:
                params[name] = self._validate(schema, {}, name, path)
        self._params = params

    @staticmethod
    def _validate(schema: type, values: Any, plugin: str, path: str) -> Any:
        from pydantic import ValidationError

        key = f"plugins.{plugin}"
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ParamsError(path, key, f"expected a mapping, got {values!r}")
        if schema.model_config.get("extra") != "allow":  # a typo must not pass silently
            known = set(schema.model_fields) | {f.alias for f in schema.model_fields.values() if f.alias}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ParamsError(path, f"{key}.{unknown[0]}", f"unknown key{closest(str(unknown[0]), known)}",
                                  f"known keys: {', '.join(sorted(known)) or 'none'}")
        try:
            return schema.model_validate(dict(values))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise ParamsError(path, f"{key}.{where}" if where else key, error["msg"]) from None

    def params_for(self, plugin_name: str) -> Any:
        """This plugin's validated params (its schema's defaults before `configure`), or None."""
        if plugin_name not in self._params:
            schema = self.schemas().get(plugin_name)
            if schema is None:
                return None
            self._params[plugin_name] = self._validate(schema, {}, plugin_name, "params.yaml")
        return self._params[plugin_name]

    # --- collecting -----------------------------------------------------------------------
    def collect(self, kind: str) -> dict[str, Any]:
        """Call every plugin's hook for `kind` and return {name: object}, checking each object
        against the hook's contract and for clashes."""
        hook = getattr(self.pm.hook, HOOKS[kind])
        found: dict[str, Any] = {}
        owner: dict[str, PluginInfo] = {}
        for impl in list(hook.get_hookimpls()):
            info = self._info(impl.plugin_name)
            contributed: list[Any] = []
            args = {"register": contributed.append, "params": None}
            if "params" in impl.argnames:
                args["params"] = self.params_for(impl.plugin_name)
            try:
                returned = impl.function(**{arg: args[arg] for arg in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:
                self._broken(info, f"failed in {HOOKS[kind]}: {type(exc).__name__}: {exc}", exc)
                continue
            if returned is not None:
                raise PluginError(f"{info.source}: {HOOKS[kind]} returned a {type(returned).__name__}; "
                                  "the hook returns nothing", "call register(obj) once per object instead")
            for obj in contributed:
                problem = _contract_problem(kind, obj)
                if problem is None and not (isinstance(getattr(obj, "name", None), str) and obj.name):
                    problem = (f"registered a {kind} without a string 'name': {obj!r}",
                               "give it a `name` attribute: the value users put in params")
                if problem:
                    raise PluginError(f"{info.source} in {HOOKS[kind]}: {problem[0]}",
                                      f"{problem[1]}; or disable the plugin with {ENV_DISABLE}={info.name}")
            names = [obj.name for obj in contributed]
            for name, obj in zip(names, contributed, strict=True):
                if name in found:
                    raise PluginError(
                        f"{kind} '{name}' is registered twice: by {owner[name].source} and by {info.source}",
                        f"disable one with {ENV_DISABLE}=<plugin name>",
                    )
                # The core calls the plugin's object through a wrapper that checks what each
                # method returns, so a wrong type is caught at the first call, naming the plugin.
                checked = Checked(obj, kind, f"{kind} '{name}' of {info.source}") if kind in ("filter", "benchmark") else obj
                found[name], owner[name] = checked, info
            info.registers[kind] = sorted(names)
            if kind == "heuristic":
                info.families = {}
                for obj in contributed:
                    info.families.setdefault(obj.family, []).append(obj.name)
                info.families = {family: sorted(names) for family, names in sorted(info.families.items())}
        self.owners = {key: o for key, o in self.owners.items() if key[0] != kind}
        self.owners.update({(kind, name): o for name, o in owner.items()})
        return dict(sorted(found.items()))

    def heuristics(self) -> dict[str, Any]:
        """{name: Heuristic} of every plugin."""
        return self.collect("heuristic")

    def backends(self) -> dict[str, Any]:
        """{name: Backend subclass} of every plugin."""
        return self.collect("backend")

    def filters(self) -> dict[str, Any]:
        """{name: filter} of every plugin, each checked at its first call."""
        return self.collect("filter")

    def benchmarks(self) -> dict[str, Any]:
        """{name: benchmark} of every plugin, each checked at its first call."""
        return self.collect("benchmark")

    def pick(self, kind: str, name: str) -> Any:
        """One object by name, or an error listing what is available."""
        available = self.collect(kind)
        if name not in available:
            raise PluginError(
                f"no {kind} named '{name}'{closest(name, available)}",
                f"available: {', '.join(available) or 'none'}; `evol plugins` lists them with their plugins",
            )
        return available[name]

    def make_backend(self, config: Any) -> Any:
        """The configured backend, constructed with `config`, with its plugin's params set."""
        cls = self.pick("backend", config.backend)
        owner = self.owners.get(("backend", cls.name))
        source = f"backend '{cls.name}' of {owner.source if owner else 'no plugin'}"
        backend = check_backend(cls(config), source)  # each result checked at the first call
        backend.plugin_params = self.params_for(owner.name) if owner else None
        return backend

    def owner(self, kind: str, name: str) -> PluginInfo | None:
        """The plugin that registered the `kind` called `name`, or None for objects no plugin registered."""
        if (kind, name) not in self.owners:
            self.collect(kind)
        return self.owners.get((kind, name))

    def source_of(self, kind: str, name: str) -> str:
        """"filter 'x' of plugin 'p' (dist 1.0)", for messages about plugin code."""
        owner = self.owner(kind, name)
        return f"{kind} '{name}' of {owner.source}" if owner else f"{kind} '{name}' (registered by no plugin)"

    def version_key(self, kind: str, name: str) -> str:
        """The distribution and version that provide `name` ("dist 1.0"), or "" when unknown
        (in-process objects). Part of the request cache key for backends."""
        owner = self.owner(kind, name)
        return owner.distribution or "" if owner else ""

    def describe(self) -> list[PluginInfo]:
        """Every plugin with what it registers, for `evol plugins`."""
        self.schemas()
        for kind in HOOKS:
            self.collect(kind)
        return sorted(self.infos.values(), key=lambda i: i.name)

    def used(self, pairs: Iterable[tuple[str, str]]) -> str:
        """"dist==version, ..." of the plugins that provide the given (kind, name) objects, for a
        stage's metrics."""
        dists = {o.project: o.version for kind, name in pairs if (o := self.owner(kind, name)) and o.project}
        return ", ".join(f"{d}=={v}" for d, v in sorted(dists.items()))


def prepare(stage: str, params_path: str | os.PathLike[str] = "params.yaml",
            lock_path: str | os.PathLike[str] = LOCK_FILE, params: Any = None) -> Registry:
    """For the stage `stage`: the registry with the `plugins` params group validated and passed to
    the plugins, after checking the plugins it uses against its section of the lock file.
    `params`: the validated params when the stage has read them already (else read from
    `params_path`)."""
    from evolinstruct.core.params import read_params

    params = params if params is not None else read_params(params_path)
    registry = get_registry()
    registry.configure(params.plugins, str(params_path))
    plugin_lock.check(lock_path, [stage], params, registry)
    return registry


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, with entry-point plugins loaded on first use."""
    global _registry
    if _registry is None:
        registry = Registry()
        registry.load_entry_points()
        _registry = registry
    return _registry


# Plugin bugs raised in domain code (core.plugin_code) are named through the process-wide registry.
set_namer(lambda kind, name: get_registry().source_of(kind, name))


def reset_registry() -> None:
    """Forget the process-wide registry (tests that change the environment use this)."""
    global _registry
    _registry = None
