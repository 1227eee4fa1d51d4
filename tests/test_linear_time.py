"""Every built-in check on model text runs in time linear in its input (issue 24): 1 MB answers,
on one line and on many lines, in shapes that make backtracking patterns quadratic (a long line
without a full stop, long runs of spaces or of one character), and doubling the input at most
~2.5x the time. A quadratic routine would take minutes at this size, not milliseconds."""

from __future__ import annotations

import time

import pytest
from plugins_under_test import filters, heuristics

from evolinstruct.core.records import Record
from evolinstruct.eliminate.decontaminate import Decontaminator
from evolinstruct.eliminate.dedup import find_duplicates, normalise, shingles
from evolinstruct.eliminate.merge import round_statistics
from evolinstruct.evaluate.benchmarks import Problem
from evolinstruct.evolve.filters import Candidate
from evolinstruct.evolve.rounds import strip_scaffolding

MB = 1 << 20


def shapes(size: int) -> dict[str, str]:
    """Model text of `size` characters in the shapes that stall backtracking patterns."""
    words = "lorem ipsum dolor sit amet sorrys unequal notable "
    line = "The result is a table of values, 1 2 3 4 5, with no full stop and no line break"
    return {
        "one_line_no_spaces": ("x" * size)[: size - 6] + " sorry",
        "one_line_words": (words * (size // len(words) + 1))[:size],
        "many_lines": ((line + "\n") * (size // (len(line) + 1) + 1))[:size],
        "space_runs": ("Rewritten prompt" + " " * 4096 + "not" + " " * 4096) * (size // 8210 + 1),
        "one_char_runs": ("#" * (size // 2) + "\n" * (size // 2)),
        "open_brackets": "O(" * (size // 2),
    }


PROBLEM = Problem("HumanEval/0", "def has_close_elements(numbers, threshold):\n    \"\"\"Check if in given list of "
                  "numbers, are any two numbers closer to each other than given threshold.\"\"\"\n",
                  "assert has_close_elements([1.0, 2.0], 0.5) is False", "has_close_elements",
                  "    for i in range(len(numbers)):\n        return True\n")
DECONTAMINATOR = Decontaminator({"humaneval": [PROBLEM]})
RULES = [filters.ShortSorry(), filters.OnlyStopWords(), filters.CopiedPromptWords(), filters.Truncated()]
JUDGE = filters.EqualityJudge()
HEURISTICS = heuristics.builtin_heuristics()


def routines() -> dict[str, object]:
    """name -> function of one text, for every built-in routine that reads model text."""
    found: dict[str, object] = {}
    for rule in RULES:
        found[f"filter {rule.name} (response)"] = lambda t, r=rule: r.check(Candidate("p", "i", t), None)
        found[f"filter {rule.name} (instruction)"] = lambda t, r=rule: r.check(Candidate("p", t, "r"), None)
    found["judge prompt"] = lambda t: JUDGE.judge_prompt(Candidate(t, t, "r"))
    found["judge parser"] = lambda t: JUDGE.check(Candidate("p", "i", "r"), t)
    found["heuristic prompts"] = lambda t: [h.render(t) for h in HEURISTICS]
    found["scaffold stripper"] = strip_scaffolding
    found["dedup"] = lambda t: (normalise(t), shingles(t), list(find_duplicates([t, t[1:], "other text"])))
    found["decontamination"] = lambda t: DECONTAMINATOR.check(t, t)
    found["merge statistics"] = lambda t: round_statistics([Record(id="r", instruction=t, output=t, round=1)])
    return found


def best_time(function, text: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function(text)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("shape", sorted(shapes(1024)))
def test_doubling_a_1mb_answer_at_most_about_doubles_the_time_of_every_check(shape):
    half, full = shapes(MB // 2)[shape], shapes(MB)[shape]
    slow = {}
    for name, function in routines().items():
        for attempt in range(3):  # a shared machine's hiccup is measured again; a quadratic cost is not a hiccup
            t_half, t_full = best_time(function, half, 3 + 2 * attempt), best_time(function, full, 3 + 2 * attempt)
            # 10 ms of slack: timer and page-fault noise on millisecond checks (a quadratic one takes seconds here).
            if t_full <= 2.5 * t_half + 0.01 and t_full < 5.0:
                slow.pop(name, None)
                break
            slow[name] = (round(t_half, 4), round(t_full, 4))
    assert not slow, f"not linear on {shape}: (seconds at 0.5 MB, 1 MB) {slow}"


def test_the_sorry_rule_quotes_the_sentence_holding_the_word_and_cuts_a_long_one():
    rule = filters.ShortSorry()
    got = rule.check(Candidate("p", "i", "Fine. I am sorry, I cannot help. Bye"), None)
    assert got.rule == "sorry" and got.evidence == "8 words; 'I am sorry, I cannot help'"
    assert rule.check(Candidate("p", "i", "No apology here: sorrys and unsorry are other words."), None) is None
    long = rule.check(Candidate("p", "i", "y" * 20_000 + " sorry " + "z" * 20_000), None)
    assert long.evidence.startswith("3 words; '...") and len(long.evidence) < 400 and "sorry" in long.evidence
