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
    assert set(specs) == {"register_heuristics", "register_backends", "register_filters", "register_benchmarks"}
    for name, fn in specs.items():
        params = ", ".join(inspect.signature(fn).parameters)
        assert sections.get(name) == f"{name}({params})", f"docs/hooks.md: section for {name} missing or drifted"
        assert ":param register:" in (fn.__doc__ or "") and "Called when" in fn.__doc__
    assert set(sections) <= set(specs), "docs/hooks.md documents a hook that does not exist"
    for name in specs:  # each section says when it is called, what it returns, and shows an example
        body = docs.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert "Called when" in body and "- Returns:" in body and "```python" in body and "@hookimpl" in body, name


def test_readme_quick_start_is_the_two_make_commands():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert re.findall(r"^make \w+$", quick, re.MULTILINE) == ["make demo", "make test"]
