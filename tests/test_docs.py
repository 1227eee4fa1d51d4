"""Every hook is documented, with the signature of its hookspec (datasette's practice)."""

import inspect
import re

from conftest import REPO

from evolinstruct import hookspecs


def hookspec_functions():
    return {name: fn for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, "evolinstruct_spec")}


def test_every_hook_has_a_section_with_its_signature_and_a_docstring():
    docs = (REPO / "docs/hooks.md").read_text()
    sections = dict(re.findall(r"^## (\w+)\n\n`(\w+\([^`]*\))`", docs, re.MULTILINE))
    specs = hookspec_functions()
    assert set(specs) == {"register_heuristics", "register_backends", "register_filters", "register_benchmarks",
                          "params_schema"}
    for name, fn in specs.items():
        params = ", ".join(inspect.signature(fn).parameters)
        assert sections.get(name) == f"{name}({params})", f"docs/hooks.md: section for {name} missing or drifted"
        assert "Called when" in (fn.__doc__ or "") and ":return:" in fn.__doc__
        for param in inspect.signature(fn).parameters:
            assert f":param {param}:" in fn.__doc__, f"{name}: {param} undocumented"
    assert set(sections) <= set(specs), "docs/hooks.md documents a hook that does not exist"
    for name in specs:  # each section says when it is called, what it returns, and shows an example
        body = docs.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert "Called when" in body and "- Returns:" in body and "```python" in body and "@hookimpl" in body, name
        for param in inspect.signature(specs[name]).parameters:
            assert f"- `{param}`:" in body, f"docs/hooks.md: {name}: {param} undocumented"
        for module in re.findall(r"^from (evolinstruct[\w.]*) import", body, re.MULTILINE):
            assert module == "evolinstruct.api", f"docs/hooks.md: {name}'s example imports {module}"


def test_readme_quick_start_is_the_two_make_commands():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert re.findall(r"^make \w+$", quick, re.MULTILINE) == ["make demo", "make test"]


def test_the_plugin_reference_in_docs_plugins_md_is_generated_from_the_api_docstrings():
    from evolinstruct import api
    from evolinstruct.cli.plugindocs import render

    text = (REPO / "docs/plugins.md").read_text()
    assert render(text) == text, "docs/plugins.md is stale: run `python -m evolinstruct.cli.plugindocs`"
    for name in api.__all__:
        assert f"\n### {name}\n" in text
        assert getattr(api, name).__doc__, f"evolinstruct.api.{name} has no docstring"


def python_files_of_examples():
    """The example plugin and the built-in plugins: the first users of the public API."""
    return sorted((REPO / "examples").rglob("*.py")) + sorted((REPO / "plugins").glob("*.py"))


def test_examples_and_builtin_plugins_import_nothing_from_evolinstruct_but_its_public_api():
    import ast

    files = python_files_of_examples()
    assert files, "no example found"
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "evolinstruct"]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for module in modules:
                if module.split(".")[0] == "evolinstruct" and module != "evolinstruct":
                    assert module == "evolinstruct.api", f"{path.relative_to(REPO)}:{node.lineno}: imports {module}"


def test_the_import_check_catches_a_non_public_import(tmp_path, monkeypatch):
    bad = tmp_path / "examples/bad/plugin.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from evolinstruct.evolve.heuristics import Heuristic\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    import pytest

    with pytest.raises(AssertionError, match="imports evolinstruct.evolve.heuristics"):
        test_examples_and_builtin_plugins_import_nothing_from_evolinstruct_but_its_public_api()
    bad.unlink()
    builtin = tmp_path / "plugins/filters.py"  # a built-in plugin is held to the same rule
    builtin.parent.mkdir()
    builtin.write_text("from evolinstruct.core.records import Rejection\n")
    (tmp_path / "examples/ok.py").write_text("from evolinstruct.api import Rejection\n")
    with pytest.raises(AssertionError, match="plugins/filters.py:1: imports evolinstruct.core.records"):
        test_examples_and_builtin_plugins_import_nothing_from_evolinstruct_but_its_public_api()


def test_make_help_lists_every_target():
    import subprocess

    phony = re.search(r"^\.PHONY: (.*)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1).split()
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert [line.split()[1] for line in out.splitlines()] == phony
    assert all(len(line.split(None, 2)) == 3 for line in out.splitlines())  # each with what it does
