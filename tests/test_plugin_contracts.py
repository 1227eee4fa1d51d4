"""Issue 17: strict, checked hooks; plugin params; plugin versions (lock file, request cache key);
plugin failures named; what backends see of each request; the fixtures plugin authors get."""

import logging

import pytest
from click.testing import CliRunner
from conftest import REPO
from pydantic import BaseModel, ConfigDict, Field
from test_plugins import install_fake_distribution, site  # noqa: F401  (site is a fixture)

from evolinstruct import plugin_lock
from evolinstruct.api import (
    EvolverConfig,
    Heuristic,
    ParamsError,
    PluginError,
    ProviderError,
    Sampling,
    ScriptedBackend,
    evolve,
    hookimpl,
)
from evolinstruct.cli.main import cli, render_plugins
from evolinstruct.core.params import EvolveParams, read_params
from evolinstruct.llm.request_cache import request_key
from evolinstruct.registry import get_registry, lock_text, reset_registry
from evolinstruct.testing import default_script


class Misspelled:
    @staticmethod
    @hookimpl
    def register_filter(register):
        register(object())


def test_a_misspelled_hook_is_an_error_under_strict_mode_naming_the_closest_hook(registry):
    with pytest.raises(PluginError) as caught:
        registry.register(Misspelled, name="typo")
    message = str(caught.value)
    assert "plugin 'typo' (registered in-process) implements 'register_filter'" in message
    assert "did you mean 'register_filters'?" in message
    assert registry.pm.get_plugin("typo") is None and "typo" not in registry.infos


def test_a_hook_marked_optional_is_not_checked(registry):
    class Optional:
        @staticmethod
        @hookimpl(optionalhook=True)
        def register_things_from_a_later_version(register):
            pass

    registry.register(Optional, name="optional")
    assert registry.infos["optional"].status == "loaded"


def test_a_misspelled_hook_is_a_warning_naming_plugin_hook_and_closest_hook_otherwise(registry, monkeypatch, caplog):
    monkeypatch.delenv("EVOLINSTRUCT_STRICT_PLUGINS")
    with caplog.at_level(logging.WARNING):
        registry.register(Misspelled, name="typo")
    assert "plugin 'typo' (registered in-process) implements 'register_filter'" in caplog.text
    assert "did you mean 'register_filters'?" in caplog.text and "will never be called" in caplog.text
    registry.unregister("typo")


def test_a_misspelled_entry_point_hook_fails_loading_under_strict_mode(site, monkeypatch):  # noqa: F811
    install_fake_distribution(site, "evol-typo", {"typo_plugin_mod": """
        from evolinstruct.api import hookimpl

        @hookimpl
        def register_heuristic(register):
            pass
    """}, {"typo": "typo_plugin_mod"})
    monkeypatch.setenv("EVOLINSTRUCT_STRICT_PLUGINS", "1")
    reset_registry()
    with pytest.raises(PluginError, match=r"plugin 'typo' \(evol-typo 0.1\) implements 'register_heuristic'.*"
                                          r"did you mean 'register_heuristics'"):
        get_registry()


def test_an_unknown_name_in_the_disable_list_is_an_error_with_a_suggestion(monkeypatch):
    monkeypatch.setenv("EVOLINSTRUCT_DISABLE_PLUGINS", "benchmarks,transformer_backend")
    reset_registry()
    try:
        with pytest.raises(PluginError, match="EVOLINSTRUCT_DISABLE_PLUGINS: no installed plugin is named "
                                              "'transformer_backend'; did you mean 'transformers_backend'"):
            get_registry()
    finally:
        reset_registry()


def plugin_with(hook_name, body):
    """An in-process plugin class whose one hook implementation is `body`."""
    return type("Plugin", (), {hook_name: staticmethod(hookimpl(specname=hook_name)(body))})


def heuristic(template="{instruction}"):
    return Heuristic("h", "code", template)


@pytest.mark.parametrize(("kind", "hook", "body", "problem"), [
    ("heuristic", "register_heuristics", lambda register: [heuristic()],
     "register_heuristics returned a list; the hook returns nothing"),
    ("heuristic", "register_heuristics", lambda register: register([heuristic()]),
     "registered a list whose item 0 is a Heuristic where an evolinstruct.api.Heuristic is expected (hint: call register(obj) once per object"),
    ("heuristic", "register_heuristics", lambda register: register(heuristic("Make it harder.")),
     "heuristic 'h': template has no {instruction} placeholder"),
    ("heuristic", "register_heuristics", lambda register: register(heuristic("{method}\n{instruction} {question}")),
     "template has an unknown field {method} (only {instruction} is replaced); template has an unknown field {question}"),
    ("backend", "register_backends", lambda register: register(ScriptedBackend()),
     "registered an instance of ScriptedBackend where a subclass of evolinstruct.api.Backend (the class, not an instance) is expected (hint: call register(ScriptedBackend)"),
    ("filter", "register_filters", lambda register: register(heuristic()),
     "registered a Heuristic where an object implementing evolinstruct.api.Filter is expected: it has no method judge_prompt, check (hint: implement judge_prompt, check"),
    ("benchmark", "register_benchmarks", lambda register: register(heuristic()),
     "implementing evolinstruct.api.Benchmark is expected: it has no method load, instruction, program"),
])
def test_contract_violations_are_errors_naming_the_plugin(registry, kind, hook, body, problem):
    registry.register(plugin_with(hook, body), name="sloppy")
    with pytest.raises(PluginError) as caught:
        registry.collect(kind)
    assert "plugin 'sloppy' (registered in-process)" in str(caught.value) and problem in str(caught.value)


def test_literal_braces_in_a_template_are_allowed(registry):
    template = 'Return JSON like {"a": 1} or a set {1, 2}; keep {{name}} as is.\n{instruction}'
    registry.register(plugin_with("register_heuristics", lambda register: register(Heuristic("j", "code", template))),
                      name="braces")
    assert registry.heuristics()["j"].template == template


# --- plugin params --------------------------------------------------------------------------------

class Difficulty(BaseModel):
    model_config = ConfigDict(extra="forbid")
    difficulty: int = Field(default=1, ge=1)


class ParamsPlugin:
    @staticmethod
    @hookimpl
    def params_schema():
        return Difficulty

    @staticmethod
    @hookimpl
    def register_heuristics(register, params):
        register(Heuristic("harder", "mine", f"Add {params.difficulty} constraints:\n{{instruction}}"))

    @staticmethod
    @hookimpl
    def register_backends(register):
        register(ScriptedBackend)


def test_plugin_params_are_validated_by_its_schema_and_passed_to_its_hooks(registry):
    registry.register(ParamsPlugin, name="my_heuristics")
    assert registry.heuristics()["harder"].template.startswith("Add 1 constraints")  # the schema's defaults
    registry.configure({"my_heuristics": {"difficulty": 3}})
    assert registry.heuristics()["harder"].template.startswith("Add 3 constraints")
    backend = registry.make_backend(EvolverConfig(backend="scripted"))
    assert backend.plugin_params == Difficulty(difficulty=3)


@pytest.mark.parametrize(("group", "message"), [
    ({"my_heuristics": {"difficulty": 0}}, "params.yaml: plugins.my_heuristics.difficulty: Input should be greater"),
    ({"my_heuristics": {"dificulty": 2}}, "plugins.my_heuristics.dificulty: unknown key; did you mean 'difficulty'?"),
    ({"my_heuristic": {"difficulty": 2}}, "plugins.my_heuristic: no installed plugin named 'my_heuristic' takes "
                                          "params; did you mean 'my_heuristics'?"),
    ({"my_heuristics": [1]}, "plugins.my_heuristics: expected a mapping"),
])
def test_bad_plugin_params_are_errors_naming_the_dotted_key(registry, group, message):
    registry.register(ParamsPlugin, name="my_heuristics")
    with pytest.raises(ParamsError) as caught:
        registry.configure(group)
    assert message in str(caught.value)


def test_a_params_schema_that_is_not_a_pydantic_model_is_an_error(registry):
    registry.register(plugin_with("params_schema", lambda: {"difficulty": int}), name="dicty")
    with pytest.raises(PluginError, match=r"plugin 'dicty' \(registered in-process\): params_schema returned"):
        registry.configure({})


def test_evol_plugins_shows_the_params_a_plugin_takes_and_its_family(registry):
    registry.register(ParamsPlugin, name="my_heuristics")
    out = render_plugins(registry.describe())
    assert "  my_heuristics (in-process); params plugins.my_heuristics: difficulty" in out
    assert "  mine:\n    harder (in-process, plugin my_heuristics)" in out


# --- versions: the lock file and the request cache key ----------------------------------------------

def test_the_lock_has_a_section_per_stage_and_a_mismatch_stops_with_the_fix(registry, tmp_path):
    params = read_params(REPO / "params.yaml")
    lock = plugin_lock.lock(params, registry)
    assert set(lock) == {"evolve", "eliminate", "evaluate"}
    assert lock["evaluate"] == {"benchmark": {name: "evolinstruct 0.1.0" for name in params.evaluate.benchmarks}}
    assert lock["evolve"]["backend"] == {params.evolver.backend: "evolinstruct 0.1.0"}
    assert set(lock["evolve"]["filter"]) == set(params.evolve.filters)
    path = tmp_path / "plugins.lock.yaml"
    path.write_text(lock_text(lock))
    plugin_lock.check(path, plugin_lock.STAGES, params, registry)  # agrees: no error
    changed = {**lock, "evolve": {**lock["evolve"], "backend": {params.evolver.backend: "evolinstruct 0.0.9"}}}
    path.write_text(lock_text(changed))
    plugin_lock.check(path, ["evaluate", "eliminate"], params, registry)  # stages using no backend are not stopped
    with pytest.raises(PluginError) as caught:
        plugin_lock.check(path, ["evolve"], params, registry)
    assert str(caught.value) == (
        f"{path}: evolve: the installed plugins differ from the lock file (backend {params.evolver.backend}: "
        "evolinstruct 0.0.9 -> evolinstruct 0.1.0) (hint: run `dvc repro`: its `plugins` stage records them, and "
        "DVC reruns the stages that use them)")
    plugin_lock.check(tmp_path / "absent.yaml", ["evolve"], params, registry)  # outside DVC: nothing to check against


def test_a_plugins_params_are_locked_only_for_the_stages_using_its_objects(registry):
    registry.register(ParamsPlugin, name="my_heuristics")
    params = read_params(REPO / "params.yaml").model_copy(update={"evolve": EvolveParams(family="mine")})
    registry.configure({"my_heuristics": {"difficulty": 3}})
    lock = plugin_lock.lock(params, registry)
    assert lock["evolve"]["heuristic"] == {"harder": "in-process"}
    assert lock["evolve"]["params"] == {"my_heuristics": {"difficulty": 3}}
    assert "params" not in lock["evaluate"] and "params" not in lock["eliminate"]


def test_a_broken_plugin_is_never_locked_in_as_absent(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("EVOLINSTRUCT_STRICT_PLUGINS", "0")
    registry.register(Misspelled, name="typo")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = CliRunner().invoke(cli, ["plugins", "--lock"])
    assert result.exit_code == 1 and not (tmp_path / "plugins.lock.yaml").exists()
    assert result.output.strip() == (
        "evol: error: plugins.lock.yaml: not written: plugin 'typo' (registered in-process) is broken: plugin 'typo' "
        "(registered in-process) implements 'register_filter', which is not an evolinstruct hook; did you mean "
        "'register_filters'? (hint: fix or upgrade it, uninstall it, or disable it with "
        "EVOLINSTRUCT_DISABLE_PLUGINS=typo (a broken plugin is never recorded as absent))")


def test_evol_plugins_lock_writes_the_file_the_checkout_commits(registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = CliRunner().invoke(cli, ["plugins", "--lock"])
    assert result.exit_code == 0 and result.output == "wrote plugins.lock.yaml\n"
    assert (tmp_path / "plugins.lock.yaml").read_text() == (REPO / "plugins.lock.yaml").read_text()
    assert CliRunner().invoke(cli, ["plugins", "--lock"]).output == "unchanged: plugins.lock.yaml\n"


def test_evol_params_checks_plugin_params_with_the_plugins_schema(registry, tmp_path):
    registry.register(ParamsPlugin, name="my_heuristics")
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text() + "\n")
    text = params.read_text().replace("plugins: {}", "plugins: {my_heuristics: {dificulty: 0}}")
    assert "dificulty" in text, "params.yaml has no `plugins: {}` line to replace"
    params.write_text(text)
    result = CliRunner().invoke(cli, ["params", "--params", str(params)])
    assert result.exit_code == 1
    assert result.output.strip() == (f"evol: error: {params}: plugins.my_heuristics.dificulty: unknown key; did you "
                                     "mean 'difficulty'? (hint: known keys: difficulty)")


def test_the_backend_plugins_version_is_part_of_the_request_cache_key(registry, tmp_path):
    from evolinstruct.stages.evolve import make_runner

    from evolinstruct.llm.request_cache import RequestCache

    sampling = Sampling(1.0, 0.9, 8)
    config = EvolverConfig(backend="openai_compatible", model="m", base_url="http://127.0.0.1:9/v1")
    cache = RequestCache(tmp_path / "c.sqlite")
    assert make_runner(registry.make_backend(config), config, cache).version == "evolinstruct 0.1.0"
    assert make_runner(ScriptedBackend(), config, cache).version == ""  # no plugin registered it
    cache.close()
    keys = {request_key("openai_compatible", "m", sampling, "p", 1, v) for v in ("", "evol 0.1.0", "evol 0.1.1")}
    assert len(keys) == 3


# --- plugin failures named ----------------------------------------------------------------------

class BuggyBackend(ScriptedBackend):
    """A bug (KeyError) for one prompt, a provider failure for another."""

    name = "buggy"

    def __init__(self, config):
        super().__init__(config, script=self.answer)

    @staticmethod
    def answer(prompt, request):
        if request.kind == "evolve" and "Reverse" in prompt:
            return {}["choices"]
        if request.kind == "evolve" and "Count" in prompt:
            return ProviderError("400: the prompt was refused")
        return default_script(prompt, request)


def test_a_bug_in_a_backend_is_recorded_per_record_naming_the_plugin_with_its_traceback_logged(registry, caplog):
    registry.register(plugin_with("register_backends", lambda register: register(BuggyBackend)), name="buggy_plugin")
    backend = registry.make_backend(EvolverConfig(backend="buggy", model="b", max_retries=1, retry_base_delay=0.001))
    with caplog.at_level(logging.ERROR):
        (attempts,) = evolve(["Add two numbers.", "Reverse a list.", "Count the words."], backend=backend)
    ok, bug, refused = attempts
    assert ok.status == "kept"
    assert bug.status == "failed" and bug.reasons[0].rule == "request_failed"
    assert bug.reasons[0].evidence == (
        "PluginError: backend 'buggy' of plugin 'buggy_plugin' (registered in-process) raised KeyError: 'choices' "
        "(hint: a bug in the plugin; its traceback is in the log)")
    assert refused.status == "failed" and refused.reasons[0].evidence == "ProviderError: 400: the prompt was refused"
    assert "backend 'buggy' of plugin 'buggy_plugin' (registered in-process) raised KeyError" in caplog.text
    assert "Traceback" in caplog.text and 'return {}["choices"]' in caplog.text
    assert "ProviderError" not in caplog.text  # a provider failure is not a plugin bug
    assert len([prompt for _, prompt in backend.requests if "Reverse" in prompt]) == 1  # a bug is not retried


def test_a_filter_that_raises_stops_the_run_naming_its_plugin(registry, caplog):
    class Raising:
        name = "raising"

        def judge_prompt(self, candidate):
            return None

        def check(self, candidate, judgement):
            return 1 / 0

    registry.register(plugin_with("register_filters", lambda register: register(Raising())), name="bad_filters")
    with caplog.at_level(logging.ERROR), pytest.raises(PluginError) as caught:
        evolve(["Add two numbers."], filters=["raising"])
    assert str(caught.value).startswith("filter 'raising' of plugin 'bad_filters' (registered in-process) raised "
                                        "ZeroDivisionError: division by zero")
    assert "Traceback" in caplog.text and "return 1 / 0" in caplog.text


def test_backends_see_the_kind_and_round_of_each_request(registry):
    backend = ScriptedBackend()
    rounds = evolve(["Add two numbers."], 2, backend=backend, filters=["sorry", "equality"])
    assert [r.status for attempts in rounds for r in attempts] == ["kept", "kept"]
    assert [(info.kind, info.round, info.filter) for info, _ in backend.requests] == [
        ("evolve", 1, None), ("answer", 1, None), ("judge", 1, "equality"),
        ("evolve", 2, None), ("answer", 2, None), ("judge", 2, "equality")]


# --- the fixtures plugin authors get (evolinstruct.pytest_plugin) ------------------------------------

def test_register_plugin_registers_for_one_test(register_plugin):
    registry = register_plugin(ParamsPlugin, name="my_heuristics")
    assert "harder" in registry.heuristics()


def test_the_registration_is_gone_in_the_next_test(evol_registry):
    assert "my_heuristics" not in evol_registry.infos and "harder" not in evol_registry.heuristics()


def test_evolve_run_is_a_tiny_end_to_end_run_with_the_scripted_backend(evolve_run, scripted_backend, tmp_path):
    rounds = evolve_run(["Add two numbers.", "Sort a list."], 2, backend=scripted_backend)
    assert [len(a) for a in rounds] == [2, 2] and all(r.status == "kept" for a in rounds for r in a)
    assert (tmp_path / "requests.sqlite").exists()
    again = evolve_run(["Add two numbers.", "Sort a list."], 2, backend=ScriptedBackend())
    assert again == rounds  # answered from the cache: the same records


def test_strict_mode_is_on_in_tests():
    import os

    assert os.environ["EVOLINSTRUCT_STRICT_PLUGINS"] == "1"


def test_a_benchmark_that_raises_stops_eval_samples_naming_its_plugin(registry, tmp_path, caplog):
    from evolinstruct.evaluate.scoring import score_samples

    class Broken:
        name = "broken_bench"

        def load(self, options):
            return {}["problems"]

        def instruction(self, problem):
            return ""

        def program(self, problem, code):
            return code

    registry.register(plugin_with("register_benchmarks", lambda register: register(Broken())), name="bad_bench")
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"task_id": "x/0", "completion": "pass"}\n')
    with caplog.at_level(logging.ERROR), pytest.raises(PluginError) as caught:
        score_samples(samples, registry.pick("benchmark", "broken_bench"), [1])
    assert str(caught.value).startswith("benchmark 'broken_bench' of plugin 'bad_bench' (registered in-process) "
                                        "raised KeyError: 'problems'")
    assert "Traceback" in caplog.text


def test_registered_adds_a_plugin_for_a_block_only(registry):
    from evolinstruct.api import registered

    with registered(ParamsPlugin, name="my_heuristics") as inside:
        assert inside is registry and "harder" in registry.heuristics()
        assert registry.owner("heuristic", "harder").name == "my_heuristics"
    assert "harder" not in registry.heuristics() and registry.owner("heuristic", "harder") is None
