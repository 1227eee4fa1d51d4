"""Elimination filters: the rules that decide an evolution failed (WizardLM, section 3.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from evolinstruct.core.records import Rejection


@dataclass(frozen=True)
class Candidate:
    """An evolution under judgement: the parent's instruction, the evolved one, and its answer."""

    parent_instruction: str
    instruction: str
    response: str
    #: "length" when the response was cut off by the token limit, as the OpenAI API reports it.
    finish_reason: str = "stop"


@runtime_checkable
class Filter(Protocol):
    """What a filter plugin registers (any object with these members; no base class needed).
    ``name`` is the value users put in ``evolve.filters``. Rule-only filters (``judge_prompt``
    returns None) run first; an LLM judge is only asked about candidates every rule kept, and its
    answer is passed to ``check`` as ``judgement``. Both methods run in a worker thread, off the
    event loop, each call bounded by ``evolve.check_timeout``; a filter whose checks are CPU-bound
    Python sets ``runs_in = "process"`` to get a process pool (it must then be picklable and
    importable), and only code that is fast and linear in its input may set ``runs_in = "loop"``."""

    name: str

    def judge_prompt(self, candidate: Candidate) -> str | None:
        """A prompt for the evolver LLM whose answer `check` needs, or None for a rule-only filter."""

    def check(self, candidate: Candidate, judgement: str | None) -> Rejection | None:
        """Return a Rejection (rule and evidence) when the candidate fails, else None."""
