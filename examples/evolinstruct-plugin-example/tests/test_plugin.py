"""The example plugin's own tests, written as a plugin author would: with the fixtures evolinstruct
installs for pytest (strict plugin checks are on), against the installed plugin
(`pip install -e .` first). evolinstruct's CI runs them in a fresh environment."""

import pytest

from evolinstruct.api import Candidate, EvolverConfig, ParamsError, PluginError, hookimpl


def test_the_plugin_loads_strictly_and_registers_a_family_a_backend_a_filter_and_a_benchmark(evol_registry):
    info = evol_registry.describe() and evol_registry.infos["example"]
    assert info.status == "loaded" and info.distribution.startswith("evolinstruct-plugin-example ")
    assert info.families == {"code": ["code_type_hints"], "typed": ["typed_edge_cases", "typed_signature"]}
    assert info.registers["backend"] == ["echo"] and info.registers["filter"] == ["todo_left"]
    assert info.registers["benchmark"] == ["tiny_arith"] and info.params == ["difficulty", "markers"]


def test_a_two_round_evolve_run_with_the_echo_backend_and_the_typed_family(evol_registry, evolve_run):
    backend = evol_registry.make_backend(EvolverConfig(backend="echo", model="echo-1"))
    seeds = ["Write a function that adds two numbers.", "Reverse a string.", "Count the vowels in a word."]
    rounds = evolve_run(seeds, 2, backend=backend, family="typed", filters=["copied_prompt_words", "todo_left"])
    assert [len(attempts) for attempts in rounds] == [3, 3]
    assert {r.heuristic for attempts in rounds for r in attempts} <= {"typed_signature", "typed_edge_cases"}
    assert all(r.status == "kept" and "reject inputs of the wrong type" in r.instruction for r in rounds[1])
    assert all(r.parent_id == p.id for r, p in zip(rounds[1], rounds[0], strict=True))


def test_params_reach_the_heuristic_and_the_filter(evol_registry):
    evol_registry.configure({"example": {"difficulty": 3, "markers": ["HACK"]}})
    assert "Name 3 new edge case(s)" in evol_registry.heuristics()["typed_edge_cases"].template
    todo_left = evol_registry.filters()["todo_left"]
    hack = Candidate("Add.", "Add two numbers.", "def add(a, b):\n    return a + b  # HACK")
    assert todo_left.check(hack, None).evidence == "HACK"
    assert todo_left.check(Candidate("Add.", "Add two numbers.", "# TODO later"), None) is None


def test_bad_params_are_errors_naming_the_key(evol_registry):
    with pytest.raises(ParamsError, match=r"plugins\.example\.difficulty"):
        evol_registry.configure({"example": {"difficulty": 0}})
    with pytest.raises(ParamsError, match=r"plugins\.example\.dificulty: unknown key; did you mean 'difficulty'"):
        evol_registry.configure({"example": {"dificulty": 2}})


def test_the_benchmark_assembles_a_program_from_the_reference(evol_registry):
    tiny = evol_registry.benchmarks()["tiny_arith"]
    problems = tiny.load({"limit": 2})
    assert [p.task_id for p in problems] == ["tiny_arith/0", "tiny_arith/1"]
    program = tiny.program(problems[0], problems[0].reference)
    assert program.startswith("def add(") and program.rstrip().endswith("assert add(-1, 1) == 0")


def test_a_misspelled_hook_fails_under_strict_mode(register_plugin):
    class Typo:
        @staticmethod
        @hookimpl
        def register_filter(register):
            pass

    with pytest.raises(PluginError, match="did you mean 'register_filters'"):
        register_plugin(Typo, name="typo")
