"""Evolution heuristics and the seeded weighted draw among them."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Heuristic:
    """One way of evolving an instruction: a prompt template with an ``{instruction}`` slot.

    ``family`` groups heuristics for the params switch ``evolve.family`` ("code" for Code
    Evol-Instruct, "general" for WizardLM's in-depth and in-breadth prompts, or a plugin's own).
    ``weight`` is the default relative chance of being drawn; params may override it per name.
    """

    name: str
    family: str
    template: str
    weight: float = 1.0

    def render(self, instruction: str) -> str:
        # str.replace, not str.format: instructions are full of braces (code, JSON, sets).
        return self.template.replace("{instruction}", instruction)


def draw(heuristics: Sequence[Heuristic], weights: Mapping[str, float], seed: int, record_id: str, round: int) -> Heuristic:
    """Draw one heuristic for a record in a round, reproducibly.

    The generator is seeded from (seed, record id, round) and nothing else, so a rerun, a resumed
    run or a run with more seeds draws the same heuristic for the same record and round.
    """
    chosen = [h for h in heuristics if weights.get(h.name, h.weight) > 0]
    if not chosen:
        raise ValueError("every heuristic has weight 0")
    rng = random.Random(f"{seed}:{record_id}:{round}")
    return rng.choices(chosen, weights=[weights.get(h.name, h.weight) for h in chosen], k=1)[0]
