import re
from collections import Counter

import pytest
from conftest import SHARED
from plugins_under_test import heuristics as builtin

from evolinstruct.evolve.heuristics import draw

REFERENCE = SHARED / "reference/evol-instruct.md"


def test_code_evol_prompt_is_the_papers_template():
    h = next(h for h in builtin.builtin_heuristics() if h.name == "code_erroneous_reference")
    assert h.render("Write a function that adds {a} and {b}.") == (
        "Please increase the difficulty of the given programming test question a bit.\n\n"
        "You can increase the difficulty using, but not limited to, the following methods:\n"
        "Provide a piece of erroneous code as a reference to increase misdirection.\n\n"
        "Write a function that adds {a} and {b}."
    )


def test_five_code_methods_and_general_family():
    heuristics = builtin.builtin_heuristics()
    assert sorted(h.name for h in heuristics if h.family == "code") == sorted(builtin.CODE_METHODS)
    assert {h.name for h in heuristics if h.family == "general"} == set(builtin.DEPTH_METHODS) | {"breadth"}
    depth = next(h for h in heuristics if h.name == "depth_constraints").render("Sort a list.")
    assert depth.endswith("#The Given Prompt#: \nSort a list.\n#Rewritten Prompt#:\n")
    assert "Please add one more constraints/requirements into #The Given Prompt#'\n" in depth


def _blocks(text):
    return re.findall(r"```\n(.*?)\n```", text, re.DOTALL)


@pytest.mark.skipif(not REFERENCE.exists(), reason="the shared reference is not beside this checkout")
def test_prompts_match_the_shared_reference_word_for_word():
    reference = REFERENCE.read_text()
    blocks = _blocks(reference)
    assert builtin.CODE_TEMPLATE == blocks[0]
    assert builtin.DEPTH_TEMPLATE.rstrip("\n") == blocks[1]
    assert builtin.BREADTH_TEMPLATE.rstrip("\n") == blocks[2]
    for method, _ in builtin.CODE_METHODS.values():
        assert f"`{method}`" in reference
    for name, method in builtin.DEPTH_METHODS.items():
        quote = '"' if name == "depth_complicate_input" else "`"  # the appendix sentence, quoted there
        assert f"{quote}{method}{quote}" in reference
    from plugins_under_test import filters

    assert filters.EQUALITY_PROMPT in reference.replace("\n   ", "\n")


def test_draw_is_seeded_per_record_and_round_and_honours_weights():
    heuristics = [h for h in builtin.builtin_heuristics() if h.family == "code"]
    first = [draw(heuristics, {}, 42, f"id{i}", 1).name for i in range(50)]
    assert first == [draw(heuristics, {}, 42, f"id{i}", 1).name for i in range(50)]
    assert first != [draw(heuristics, {}, 42, f"id{i}", 2).name for i in range(50)]
    counts = Counter(draw(heuristics, {}, 7, f"r{i}", 1).name for i in range(4000))
    assert counts["code_complexity"] < 0.75 * counts["code_constraints"]  # half weight, as the paper asks
    only = Counter(draw(heuristics, {n: 0 for n in builtin.CODE_METHODS if n != "code_reasoning"}, 7, f"r{i}", 1).name
                   for i in range(100))
    assert set(only) == {"code_reasoning"}
