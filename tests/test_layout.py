"""The house stays readable: imports flow one way (stages and plugins, then the domain packages,
then llm/ and core/), and no two modules import each other, however indirectly."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from conftest import REPO

#: Lower imports nothing higher. Equal ranks in different packages may not import each other
#: unless listed in ALLOWED.
RANK = {
    "core": 0, "hookspecs": 0,
    "llm": 1,
    "registry": 2.5,  # knows every domain's plugin types, to check the hooks' contracts
    "plugin_contracts": 2.4, "plugin_lock": 2.4,  # the registry's helpers: contracts checked, versions locked
    "seed": 2, "evolve": 2, "eliminate": 2, "train": 2, "evaluate": 2,
    "testing": 3, "api": 4, "stages": 3, "pytest_plugin": 4,
    "plugins": 4.5,  # the built-ins are plugins like any other: they use the public API only
    "demo": 4.8, "cli": 5,
    "evolinstruct": 0,  # the package root: __version__ only
}
#: Decontamination checks training data against the problems a benchmark evaluates: it reads
#: evaluate's Problem type, nothing else of it.
ALLOWED = {("eliminate", "evaluate")}


def modules() -> dict[str, Path]:
    found = {}
    for path in (REPO / "evolinstruct").rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    for folder in ("stages", "plugins"):
        for path in (REPO / folder).glob("*.py"):
            found[f"evolinstruct.{folder}" + ("" if path.stem == "__init__" else f".{path.stem}")] = path
    return found


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "evolinstruct"


def imports() -> dict[str, set[str]]:
    """Every evolinstruct module each module imports, at any depth of its code: lazy imports and
    imports under `if TYPE_CHECKING:` count too (a type-only import is still a dependency: the two
    modules cannot be read, moved or tested apart)."""
    known = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("evolinstruct"):
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("evolinstruct")]
            for target in targets:
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
                    break
    return graph


def test_no_relative_imports_reach_outside_their_package():
    """Absolute imports only: a module's imports say where they come from, and moves stay greppable."""
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                raise AssertionError(f"{path.relative_to(REPO)}:{node.lineno}: relative import above its package")


def test_imports_flow_down_the_layers():
    wrong = []
    for source, targets in imports().items():
        for target in targets:
            a, b = package(source), package(target)
            if a != b and RANK[b] >= RANK[a] and (a, b) not in ALLOWED:
                wrong.append(f"{source} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in list(modules()):
        if node not in index:
            visit(node)
    assert not cycles, cycles
