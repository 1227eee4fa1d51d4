"""Plugin versions and params under DVC: plugins.lock.yaml, one section per stage that uses plugins.

The first stage of dvc.yaml, ``plugins``, is ``always_changed``: every ``dvc repro`` (and
``dvc exp run``) runs its command, ``evol plugins --lock``, before anything else. It writes, for each
stage, the plugin objects that stage's params select (the backend, the heuristics of the family,
the filters, the benchmarks), each with the distribution and version providing it, and the
validated params of the plugins that own them. Each stage reads its own section as a DVC param, so:

* a plugin upgrade, a new plugin or a removed one reruns exactly the stages whose section changed
  (a filter upgrade reruns evolve onward; evaluate only if evolve's output changed);
* a plugin's param (``plugins.<name>.<key>``) reruns only the stages using one of its objects;
* the file is rewritten with the same bytes when nothing changed, so DVC reruns nothing.

A broken plugin (it failed to import, a hook raised, a hook is misspelled) is never recorded: the
lock step stops naming it, since recording its objects as absent would rerun stages without them.
A stage run outside ``dvc repro`` still compares its section with what is installed (:func:`check`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from evolinstruct.core.errors import PluginError

#: The file the `plugins` stage writes and the stages read as DVC params (see dvc.yaml).
LOCK_FILE = "plugins.lock.yaml"
#: The stages that use plugin objects: their sections of the lock file.
STAGES = ("evolve", "eliminate", "evaluate")


def uses(stage: str, params: Any, registry: Any) -> list[tuple[str, str]]:
    """The (kind, name) plugin objects `stage` uses under `params` (a validated Params)."""
    if stage == "evolve":
        family = [("heuristic", name) for name, h in registry.heuristics().items() if h.family == params.evolve.family]
        return [("backend", params.evolver.backend), *family, *(("filter", name) for name in params.evolve.filters)]
    if stage == "eliminate":
        if not params.eliminate.decontaminate:
            return []
        names = params.eliminate.benchmarks or list(registry.benchmarks())  # empty: every registered benchmark
        return [("benchmark", name) for name in names]
    if stage == "evaluate":
        return [("benchmark", name) for name in params.evaluate.benchmarks]
    raise ValueError(f"stage '{stage}' uses no plugins")


def stage_entry(stage: str, params: Any, registry: Any) -> dict[str, Any]:
    """`stage`'s section: {kind: {name: "distribution version"}} for the objects it uses, and
    `params`: {plugin: its validated params} for the plugins that own them. An object that no
    plugin provides is left out (the stage itself says so when it runs)."""
    entry: dict[str, Any] = {}
    owners = {}
    for kind, name in uses(stage, params, registry):
        owner = registry.owner(kind, name)
        if owner is None:
            continue
        entry.setdefault(kind, {})[name] = owner.distribution or "in-process"
        owners[owner.name] = owner
    plugin_params = {}
    for plugin in sorted(owners):
        values = registry.params_for(plugin)
        if values is not None:
            plugin_params[plugin] = values.model_dump(mode="json")
    if plugin_params:
        entry["params"] = plugin_params
    return {key: dict(sorted(value.items())) for key, value in sorted(entry.items())}


def refuse_broken(registry: Any) -> None:
    """Stop when a plugin is broken (failed to import, a hook raised, a misspelled hook): its objects
    would be recorded as absent, and the stages rerun without them."""
    registry.describe()  # every hook called, so a failing one is seen
    for info in sorted(registry.infos.values(), key=lambda i: i.name):
        problem = info.error if info.status == "broken" else (info.warnings[0] if info.warnings else None)
        if problem:
            raise PluginError(
                f"{LOCK_FILE}: not written: {info.source} is broken: {problem}",
                f"fix or upgrade it, uninstall it, or disable it with EVOLINSTRUCT_DISABLE_PLUGINS={info.name} "
                "(a broken plugin is never recorded as absent)")


def lock(params: Any, registry: Any, stages: Iterable[str] = STAGES) -> dict[str, Any]:
    """{stage: its section} for `stages`, after refusing broken plugins; what the lock file holds."""
    refuse_broken(registry)
    return {stage: stage_entry(stage, params, registry) for stage in stages}


def lock_text(sections: Mapping[str, Any]) -> str:
    """The lock file's text: a comment saying where it comes from, then YAML."""
    import yaml

    return ("# Written by `evol plugins --lock`, the `plugins` stage of dvc.yaml, which DVC runs on every\n"
            "# `dvc repro`: per stage, the plugin objects it uses with the distribution and version providing\n"
            "# them, and the params of their plugins. Each stage reads its section as a DVC param, so a plugin\n"
            "# upgrade or a plugin param reruns exactly the stages using one of its objects.\n"
            + yaml.safe_dump(dict(sections), sort_keys=True, default_flow_style=False))


def check(path: str | os.PathLike[str], stages: Iterable[str], params: Any, registry: Any) -> None:
    """Stop when `stages`' sections of the lock file differ from what is installed: a stage run by
    hand after a plugin changed, outside `dvc repro` (which writes the file first). A missing file,
    or a file without the stage's section, is not checked (a stage run outside DVC)."""
    import yaml

    if not Path(path).exists():
        return
    locked = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for stage in stages:
        if stage not in locked:
            continue
        want, have = locked[stage] or {}, stage_entry(stage, params, registry)
        if want == have:
            continue
        changes = []
        for kind in sorted(set(want) | set(have)):
            old, new = want.get(kind) or {}, have.get(kind) or {}
            changes += [f"{kind} {name}: {old.get(name, 'absent')} -> {new.get(name, 'absent')}"
                        for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
        raise PluginError(
            f"{path}: {stage}: the installed plugins differ from the lock file ({'; '.join(changes)})",
            "run `dvc repro`: its `plugins` stage records them, and DVC reruns the stages that use them")
