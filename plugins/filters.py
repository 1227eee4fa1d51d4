"""Built-in elimination filters: the four rules of WizardLM (arXiv 2304.12244, section 3.3), plus
responses cut off by the token limit.

Rules 2 and 3 look at the *response*, rule 4 at the evolved *instruction*, as the paper says
(applying 2-3 to the instruction is a known reimplementation bug).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from evolinstruct.api import Candidate, Rejection, hookimpl

# WizardLM section 3.3, rule 1: the equality judge prompt, verbatim (typo "requirments" included).
EQUALITY_PROMPT = (
    "Here are two Instructions to ChatGPT AI, do you think they are equal to each other, which meet the "
    "following requirements:\n"
    "1. They have same constraints and requirments.\n"
    "2. They have same depth and breadth of the inquiry.\n"
    "The First Prompt: {first}\n"
    "The Second Prompt: {second}\n"
    "Your Judgement (Just answer: Equal or Not Equal. No need to explain the reason.):"
)

EQUAL, NOT_EQUAL, UNPARSEABLE = "equal", "not_equal", "unparseable"
_NEGATED = re.compile(r"\b(not\s+equal|unequal|not\s+the\s+same|different)\b")
_EQUAL = re.compile(r"\b(equal|the\s+same|identical)\b")


def parse_equality_verdict(answer: str) -> str:
    """Read the judge's answer. "Not Equal" is *not* "Equal" (the substring test gets this wrong).

    The first verdict phrase in the answer decides; an answer with neither phrase is unparseable.
    """
    text = re.sub(r"[^a-z\s]", " ", answer.lower())
    negated, equal = _NEGATED.search(text), _EQUAL.search(text)
    if negated and (not equal or negated.start() <= equal.start()):
        return NOT_EQUAL
    if equal:
        return EQUAL
    return UNPARSEABLE


@dataclass(frozen=True)
class EqualityJudge:
    """Rule 1: the evolution gives no information gain over its parent, as judged by the evolver LLM."""

    name: str = "equality"
    #: Runs inline on the event loop: linear in its input (tests/test_linear_time.py) and cheaper
    #: than a hop to the plugin pool (about 40 us against 200 us of CPU per call).
    runs_in: ClassVar[str] = "loop"

    def judge_prompt(self, candidate: Candidate) -> str | None:
        return EQUALITY_PROMPT.replace("{first}", candidate.parent_instruction).replace(
            "{second}", candidate.instruction
        )

    def check(self, candidate: Candidate, judgement: str | None) -> Rejection | None:
        verdict = parse_equality_verdict(judgement or "")
        if verdict == EQUAL:
            return Rejection(self.name, f"judge said: {judgement!r}")
        if verdict == UNPARSEABLE:
            return Rejection("equality_unparseable", f"judge said: {judgement!r}")
        return None


@dataclass(frozen=True)
class ShortSorry:
    """Rule 2: the response contains "sorry" and is shorter than 80 words."""

    name: str = "sorry"
    #: Runs inline on the event loop: linear in its input (tests/test_linear_time.py) and cheaper
    #: than a hop to the plugin pool (about 40 us against 200 us of CPU per call).
    runs_in: ClassVar[str] = "loop"
    max_words: int = 80

    def judge_prompt(self, candidate: Candidate) -> None:
        return None

    def check(self, candidate: Candidate, judgement: str | None) -> Rejection | None:
        response = candidate.response
        words = len(response.split())
        if words >= self.max_words:
            return None
        match = _SORRY.search(response)
        if not match:
            return None
        return Rejection(self.name, f"{words} words; {sentence_around(response, match.start(), match.end())!r}")


#: The word alone: a literal with word boundaries, so the search is linear in the response's length
#: (the sentence around it is found with str.rfind/find, not with `[^.\n]*` on both sides, which
#: backtracks quadratically over a long line without a full stop).
_SORRY = re.compile(r"\bsorry\b", re.IGNORECASE)
#: Evidence is a short quote: a sentence longer than this is cut, with "..." marking the cut.
EVIDENCE_CHARS = 300


def sentence_around(text: str, start: int, end: int) -> str:
    """The sentence (between full stops and line breaks) holding text[start:end], stripped, cut to
    EVIDENCE_CHARS around the match when it is longer."""
    left = max(text.rfind(".", 0, start), text.rfind("\n", 0, start)) + 1
    stops = [at for at in (text.find(".", end), text.find("\n", end)) if at >= 0]
    right = min(stops) if stops else len(text)
    if right - left > EVIDENCE_CHARS:
        half = (EVIDENCE_CHARS - (end - start)) // 2
        left, right = max(left, start - half), min(right, end + half)
        return "..." + text[left:right].strip() + "..."
    return text[left:right].strip()


# NLTK's English stop word list (the usual reading of "stop words" in the paper).
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he
    him his himself she she's her hers herself it it's its itself they them their theirs themselves what which
    who whom this that that'll these those am is are was were be been being have has had having do does did
    doing a an the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then once here
    there when where why how all any both each few more most other some such no nor not only own same so than
    too very s t can will just don don't should should've now d ll m o re ve y ain aren aren't couldn
    couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't
    mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn
    wouldn't""".split()
)


@dataclass(frozen=True)
class OnlyStopWords:
    """Rule 3: the response contains only punctuation and stop words (or nothing at all)."""

    name: str = "stopwords_only"
    #: Runs inline on the event loop: linear in its input (tests/test_linear_time.py) and cheaper
    #: than a hop to the plugin pool (about 40 us against 200 us of CPU per call).
    runs_in: ClassVar[str] = "loop"

    def judge_prompt(self, candidate: Candidate) -> None:
        return None

    def check(self, candidate: Candidate, judgement: str | None) -> Rejection | None:
        words = re.findall(r"[a-z0-9_]+(?:'[a-z]+)?", candidate.response.lower())
        if all(word in STOP_WORDS for word in words):
            return Rejection(self.name, f"response: {candidate.response[:200]!r}")
        return None


#: Rule 4: words of the evolving prompt that must not leak into the evolved instruction.
PROMPT_WORDS = ("given prompt", "rewritten prompt", "created prompt")


@dataclass(frozen=True)
class CopiedPromptWords:
    """Rule 4: the evolved instruction copies words from the evolving prompt ("#Rewritten Prompt#", ...)."""

    name: str = "copied_prompt_words"
    #: Runs inline on the event loop: linear in its input (tests/test_linear_time.py) and cheaper
    #: than a hop to the plugin pool (about 40 us against 200 us of CPU per call).
    runs_in: ClassVar[str] = "loop"

    def judge_prompt(self, candidate: Candidate) -> None:
        return None

    def check(self, candidate: Candidate, judgement: str | None) -> Rejection | None:
        lowered = candidate.instruction.lower()
        for words in PROMPT_WORDS:
            at = lowered.find(words)
            if at >= 0:
                return Rejection(self.name, f"instruction contains {candidate.instruction[max(0, at - 1):at + len(words) + 1]!r}")
        return None


@dataclass(frozen=True)
class Truncated:
    """Not in the paper: the response was cut off by the token limit, so its code is incomplete."""

    name: str = "truncated"
    #: Runs inline on the event loop: linear in its input (tests/test_linear_time.py) and cheaper
    #: than a hop to the plugin pool (about 40 us against 200 us of CPU per call).
    runs_in: ClassVar[str] = "loop"

    def judge_prompt(self, candidate: Candidate) -> None:
        return None

    def check(self, candidate: Candidate, judgement: str | None) -> Rejection | None:
        if candidate.finish_reason == "length":
            return Rejection(self.name, f"finish_reason=length after {len(candidate.response.split())} words")
        return None


@hookimpl
def register_filters(register):
    for rule in (EqualityJudge(), ShortSorry(), OnlyStopWords(), CopiedPromptWords(), Truncated()):
        register(rule)
