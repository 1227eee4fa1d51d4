"""Plugin loading: built-ins through entry points, in-process plugins, broken, disabled and clashing ones."""

import importlib
import logging
import textwrap

import pytest
from click.testing import CliRunner

from evolinstruct.cli.main import cli
from evolinstruct.evolve.heuristics import Heuristic
from evolinstruct.hookspecs import hookimpl
from evolinstruct.registry import PluginError, get_registry, reset_registry

BUILTIN = {"heuristics", "filters", "api_backends", "transformers_backend", "benchmarks"}


def install_fake_distribution(root, name, modules, entry_points):
    """A real installed distribution as importlib.metadata sees one: a dist-info folder on sys.path."""
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{ep} = {module}" for ep, module in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[evolinstruct]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    reset_registry()


def test_builtins_are_entry_point_plugins(registry):
    infos = {info.name: info for info in registry.describe()}
    assert BUILTIN <= set(infos)
    assert all(infos[name].distribution.startswith("evolinstruct ") for name in BUILTIN)
    assert set(registry.backends()) >= {"openai", "anthropic", "openai_compatible", "transformers"}
    assert set(registry.filters()) >= {"equality", "sorry", "stopwords_only", "copied_prompt_words", "truncated"}
    assert set(registry.benchmarks()) >= {"humaneval", "mbpp"}
    assert len([h for h in registry.heuristics().values() if h.family == "code"]) == 5


class ExtraHeuristic:
    @staticmethod
    @hookimpl
    def register_heuristics(register):
        register(Heuristic("make_it_async", "code", "Make this asynchronous:\n{instruction}"))


def test_in_process_plugin_registers_and_unregisters(registry):
    registry.register(ExtraHeuristic, name="extra")
    try:
        assert "make_it_async" in registry.heuristics()
        assert registry.infos["extra"].registers["heuristic"] == ["make_it_async"]
    finally:
        registry.unregister("extra")
    assert "make_it_async" not in registry.heuristics()


def test_duplicate_name_is_an_error_naming_both_sources(registry):
    class Clash:
        @staticmethod
        @hookimpl
        def register_heuristics(register):
            register(Heuristic("code_constraints", "code", "{instruction}"))

    registry.register(Clash, name="clash")
    try:
        with pytest.raises(PluginError) as caught:
            registry.heuristics()
        message = str(caught.value)
        assert "heuristic 'code_constraints' is registered twice" in message
        assert "plugin 'heuristics' (evolinstruct 0.1.0)" in message and "plugin 'clash'" in message
    finally:
        registry.unregister("clash")


BROKEN = {"broken_plugin_mod": "raise ImportError('needs a library that is not installed')\n"}


def test_broken_entry_point_plugin_is_skipped_with_a_warning(site, monkeypatch, caplog):
    install_fake_distribution(site, "evol-broken", BROKEN, {"broken": "broken_plugin_mod"})
    monkeypatch.delenv("EVOLINSTRUCT_STRICT_PLUGINS", raising=False)
    reset_registry()
    with caplog.at_level(logging.WARNING):
        registry = get_registry()
    assert registry.infos["broken"].status == "broken"
    assert "plugin 'broken' (evol-broken 0.1)" in caplog.text and "needs a library" in caplog.text
    assert "openai" in registry.backends()  # the rest still works


def test_broken_plugin_is_fatal_when_strict(site, monkeypatch):
    install_fake_distribution(site, "evol-broken", BROKEN, {"broken": "broken_plugin_mod"})
    monkeypatch.setenv("EVOLINSTRUCT_STRICT_PLUGINS", "1")
    reset_registry()
    with pytest.raises(PluginError, match="plugin 'broken' .*needs a library"):
        get_registry()


def test_a_plugin_whose_hook_raises_is_skipped(site, monkeypatch, caplog):
    install_fake_distribution(site, "evol-raises", {"raising_plugin_mod": """
        from evolinstruct.hookspecs import hookimpl

        @hookimpl
        def register_filters(register):
            raise RuntimeError("bug in the plugin")
    """}, {"raising": "raising_plugin_mod"})
    monkeypatch.delenv("EVOLINSTRUCT_STRICT_PLUGINS", raising=False)
    reset_registry()
    with caplog.at_level(logging.WARNING):
        filters = get_registry().filters()
    assert "sorry" in filters and "bug in the plugin" in caplog.text


def test_plugins_can_be_disabled_by_name(monkeypatch):
    monkeypatch.setenv("EVOLINSTRUCT_DISABLE_PLUGINS", "transformers_backend, benchmarks")
    reset_registry()
    try:
        registry = get_registry()
        assert "transformers" not in registry.backends() and registry.benchmarks() == {}
        assert registry.infos["benchmarks"].status == "disabled"
        with pytest.raises(PluginError, match="no backend named 'transformers'.*available: anthropic"):
            registry.pick("backend", "transformers")
    finally:
        reset_registry()


def test_evol_plugins_lists_plugins_registrations_and_distributions(registry):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "heuristics (evolinstruct 0.1.0)" in result.output
    assert "backends: anthropic, openai, openai_compatible" in result.output
    assert "filters: copied_prompt_words, equality, sorry, stopwords_only, truncated" in result.output


def test_no_top_level_stages_or_plugins_package_is_installed():
    import importlib.util
    import sys

    outside = [p for p in sys.path if p and "site-packages" in p]
    for name in ("stages", "plugins"):
        spec = importlib.machinery.PathFinder.find_spec(name, outside)
        assert spec is None, f"a top-level '{name}' package is importable from site-packages: {spec.origin}"
    assert importlib.util.find_spec("evolinstruct.stages.evolve") is not None
