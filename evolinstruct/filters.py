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
    name: str

    def judge_prompt(self, candidate: Candidate) -> str | None:
        """A prompt for the evolver LLM whose answer `check` needs, or None for a rule-only filter."""

    def check(self, candidate: Candidate, judgement: str | None) -> Rejection | None:
        """Return a Rejection (rule and evidence) when the candidate fails, else None."""
