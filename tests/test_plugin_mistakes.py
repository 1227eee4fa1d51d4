"""Issue 23: every plugin mistake is caught where it is made, in one line naming the plugin, its
distribution and version, what was expected, and a hint: at registration when it can be seen
there, else at the first call of the method that got it wrong."""

import asyncio
import pickle

import pytest
from test_plugins import install_fake_distribution, site  # noqa: F401  (site is a fixture)

from evolinstruct.api import (
    Completion,
    EvolError,
    EvolverConfig,
    Heuristic,
    PluginError,
    Problem,
    Rejection,
    Sampling,
    ScriptedBackend,
    evolve,
    hookimpl,
)
from evolinstruct.evaluate.benchmarks import prompt_for


def plugin_with(hook, body):
    class Plugin:
        pass

    setattr(Plugin, hook, staticmethod(hookimpl(specname=hook)(body)))
    return Plugin


class YesFilter:
    """`check` returns True ("yes, reject") instead of a Rejection."""

    name = "yes"

    def judge_prompt(self, candidate):
        return None

    def check(self, candidate, judgement):
        return True


class DictBenchmark:
    """`load` returns dicts instead of Problems."""

    name = "dicts"

    def load(self, options):
        return [{"task_id": "d/0", "prompt": "def f():", "test": "", "entry_point": "f"}]

    def instruction(self, problem):
        return problem.prompt

    def program(self, problem, code):
        return code


LINE = "(registered in-process)"


def test_a_filter_check_returning_true_stops_the_run_naming_plugin_and_expected_type(registry):
    registry.register(plugin_with("register_filters", lambda register: register(YesFilter())), name="yes_filters")
    with pytest.raises(PluginError) as caught:
        evolve(["Add two numbers."], filters=["yes"])
    assert str(caught.value) == (
        f"filter 'yes' of plugin 'yes_filters' {LINE}: check() returned True (a bool); expected an "
        "evolinstruct.api.Rejection or None (hint: return Rejection(rule, evidence) to reject the candidate, "
        "None to keep it)")


def test_a_filter_class_registered_instead_of_an_instance_is_refused_at_registration(registry):
    registry.register(plugin_with("register_filters", lambda register: register(YesFilter)), name="classy")
    with pytest.raises(PluginError) as caught:
        registry.filters()
    assert str(caught.value) == (
        f"plugin 'classy' {LINE} in register_filters: registered the class YesFilter where an object implementing "
        "evolinstruct.api.Filter (an instance) is expected (hint: call register(YesFilter(...)), not "
        "register(YesFilter); or disable the plugin with EVOLINSTRUCT_DISABLE_PLUGINS=classy)")


def test_a_heuristic_class_is_refused_at_registration(registry):
    registry.register(plugin_with("register_heuristics", lambda register: register(Heuristic)), name="classy")
    with pytest.raises(PluginError, match=r"registered the class Heuristic where an evolinstruct.api.Heuristic "
                                          r"\(an instance\) is expected \(hint: call register\(Heuristic\(...\)\)"):
        registry.heuristics()


def test_a_benchmark_load_returning_dicts_is_a_wrong_return_type_not_an_attribute_error(registry):
    registry.register(plugin_with("register_benchmarks", lambda register: register(DictBenchmark())), name="dicty")
    benchmark = registry.pick("benchmark", "dicts")
    with pytest.raises(PluginError) as caught:
        benchmark.load({})
    assert str(caught.value) == (
        f"benchmark 'dicts' of plugin 'dicty' {LINE}: load() returned a list whose item 0 is a dict; expected a "
        "list of evolinstruct.api.Problem (hint: build each problem as Problem(task_id, prompt, test, entry_point))")


def test_optional_benchmark_methods_stay_optional_through_the_check(registry):
    class Plain(DictBenchmark):
        name = "plain"

        def load(self, options):
            return [Problem("p/0", "def f():", "", "f")]

        def instruction(self, problem):
            return 42  # not a str

    registry.register(plugin_with("register_benchmarks", lambda register: register(Plain())), name="plain_plugin")
    benchmark = registry.pick("benchmark", "plain")
    assert not hasattr(benchmark, "prompt") and not hasattr(benchmark, "describe")
    (problem,) = benchmark.load({})
    with pytest.raises(PluginError, match=r"instruction\(\) returned a int; expected a str"):
        prompt_for(benchmark, problem)
    assert pickle.loads(pickle.dumps(registry.pick("filter", "sorry"))).name == "sorry"  # worker pools can take them


class StrBackend(ScriptedBackend):
    """`complete` returns the text instead of a Completion."""

    name = "strs"

    async def complete(self, prompt, sampling):
        self.requests.append((None, prompt))
        return "just text"


def test_a_backend_returning_a_str_stops_the_run_at_the_first_answer_naming_plugin(registry):
    registry.register(plugin_with("register_backends", lambda register: register(StrBackend)), name="str_plugin")
    backend = registry.make_backend(EvolverConfig(backend="strs", model="m", max_retries=1, retry_base_delay=0.001))
    with pytest.raises(EvolError) as caught:
        evolve(["Add two numbers.", "Reverse a list."], backend=backend)
    assert str(caught.value) == (
        f"backend 'strs' of plugin 'str_plugin' {LINE}: complete() returned a str; expected an "
        "evolinstruct.api.Completion (with a str text); fix: return Completion(text, finish_reason, prompt_tokens, "
        "completion_tokens) (hint: fix it and rerun: answered requests are cached)")
    assert len(backend.requests) == 1  # stopped at the first answer, not record after record


def test_a_local_backend_passing_a_wrong_outcome_to_on_done_is_named(registry):
    class Local(ScriptedBackend):
        name = "local"

        async def complete_many(self, prompts, sampling, on_done, control=None):
            for i, _ in enumerate(prompts):
                on_done(i, {"text": "x"})

    registry.register(plugin_with("register_backends", lambda register: register(Local)), name="local_plugin")
    backend = registry.make_backend(EvolverConfig(backend="local", model="m"))
    with pytest.raises(PluginError) as caught:
        asyncio.run(backend.complete_many(["p"], Sampling(1.0, None, 8), lambda i, c: None))
    assert str(caught.value) == (
        f"backend 'local' of plugin 'local_plugin' {LINE}: complete_many() returned a dict; expected on_done(index, "
        "an evolinstruct.api.Completion or an exception) (hint: return Completion(text, finish_reason, prompt_tokens, "
        "completion_tokens))")
    assert type(backend).complete_many is Local.complete_many  # the class is untouched: still a local backend


@pytest.mark.parametrize(("body", "line"), [
    (lambda register: register(ScriptedBackend()),
     "registered an instance of ScriptedBackend where a subclass of evolinstruct.api.Backend (the class, not an "
     "instance) is expected (hint: call register(ScriptedBackend); the core constructs it with the evolver params"),
    (lambda register: register(type("Nothing", (ScriptedBackend.__mro__[1],), {"name": "nothing"})),
     "backend class Nothing implements neither complete nor complete_many (hint: implement `async def "
     "complete(self, prompt, sampling) -> Completion`"),
])
def test_backend_mistakes_seen_at_registration(registry, body, line):
    registry.register(plugin_with("register_backends", body), name="b")
    with pytest.raises(PluginError) as caught:
        registry.backends()
    assert line in str(caught.value)


def test_an_installed_plugins_mistake_names_its_distribution_and_version(site, monkeypatch):  # noqa: F811
    from evolinstruct.registry import get_registry, reset_registry

    install_fake_distribution(site, "evol-yes", {"yes_plugin": """
from evolinstruct.api import hookimpl

class YesFilter:
    name = "yes"
    def judge_prompt(self, candidate):
        return None
    def check(self, candidate, judgement):
        return True

@hookimpl
def register_filters(register):
    register(YesFilter())
"""}, {"yes_plugin": "yes_plugin"})
    reset_registry()
    try:
        candidate_filter = get_registry().pick("filter", "yes")
        from evolinstruct.api import Candidate

        with pytest.raises(PluginError, match=r"^filter 'yes' of plugin 'yes_plugin' \(evol-yes 0.1\): check\(\) "
                                              r"returned True \(a bool\)"):
            candidate_filter.check(Candidate("a", "b", "c"), None)
        assert candidate_filter.check.__name__ == "check" and isinstance(Rejection("r", "e"), Rejection)
    finally:
        reset_registry()


def test_a_completion_is_still_a_completion(registry):
    registry.register(plugin_with("register_backends", lambda register: register(ScriptedBackend)), name="ok")
    backend = registry.make_backend(EvolverConfig(backend="scripted", model="m"))
    answer = asyncio.run(backend.complete("Add two numbers.", Sampling(1.0, None, 8)))
    assert isinstance(answer, Completion) and answer.text
