import pytest
from plugins_under_test import filters as rules

from evolinstruct.evolve.filters import Candidate


def cand(response="def f():\n    return 1", instruction="Write f that returns 1.", finish="stop"):
    return Candidate("Write f.", instruction, response, finish)


@pytest.mark.parametrize("answer, verdict", [
    ("Equal", rules.EQUAL),
    ("Equal.", rules.EQUAL),
    ("  equal\n", rules.EQUAL),
    ("They are the same.", rules.EQUAL),
    ("Not Equal", rules.NOT_EQUAL),
    ("Not equal.", rules.NOT_EQUAL),
    ("NOT EQUAL", rules.NOT_EQUAL),
    ("Not Equal. The second adds a constraint, so they are not equal.", rules.NOT_EQUAL),
    ("Unequal", rules.NOT_EQUAL),
    ("The two prompts are not the same.", rules.NOT_EQUAL),
    ("I cannot judge this.", rules.UNPARSEABLE),
    ("", rules.UNPARSEABLE),
])
def test_equality_verdict_parser(answer, verdict):
    assert rules.parse_equality_verdict(answer) == verdict


def test_equality_judge_keeps_not_equal_and_rejects_equal_and_unparseable():
    judge = rules.EqualityJudge()
    prompt = judge.judge_prompt(cand())
    assert "The First Prompt: Write f.\nThe Second Prompt: Write f that returns 1.\n" in prompt
    assert judge.check(cand(), "Not Equal") is None
    assert judge.check(cand(), "Equal").rule == "equality"
    assert judge.check(cand(), "Maybe?").rule == "equality_unparseable"


def test_sorry_rule_applies_to_short_responses_only():
    rule = rules.ShortSorry()
    assert rule.check(cand("I'm sorry, but I can't help with writing that function."), None).rule == "sorry"
    long_answer = "Sorry for the long preamble. " + "word " * 90
    assert rule.check(cand(long_answer), None) is None
    assert rule.check(cand("def sorry_counter():\n    return 0"), None) is None  # 'sorry_counter' is not 'sorry'
    # The rule looks at the response, not the instruction (a known reimplementation bug).
    assert rule.check(cand(instruction="Say sorry to the user in a function."), None) is None


def test_stop_words_rule():
    rule = rules.OnlyStopWords()
    assert rule.check(cand("It is what it is... and so on, fine!"), None) is None  # 'fine' is no stop word
    assert rule.check(cand("It is... and so."), None).rule == "stopwords_only"
    assert rule.check(cand("?!.,;"), None).rule == "stopwords_only"
    assert rule.check(cand(""), None).rule == "stopwords_only"
    assert rule.check(cand("return x"), None) is None


def test_copied_prompt_words_rule_looks_at_the_instruction():
    rule = rules.CopiedPromptWords()
    hit = rule.check(cand(instruction="#Rewritten Prompt#: Write f that returns 1 in O(1)."), None)
    assert hit.rule == "copied_prompt_words" and "Rewritten Prompt" in hit.evidence
    assert rule.check(cand(instruction="Modify the given prompt so that f returns 2."), None).rule == "copied_prompt_words"
    assert rule.check(cand(instruction="As in the created prompt, return 3."), None).rule == "copied_prompt_words"
    assert rule.check(cand(instruction="Write f; the prompt string is given as input."), None) is None
    assert rule.check(cand(response="The given prompt asks for f."), None) is None


def test_truncated_rule():
    assert rules.Truncated().check(cand(finish="length"), None).rule == "truncated"
    assert rules.Truncated().check(cand(), None) is None
