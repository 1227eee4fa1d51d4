"""Prices, spend and the budget cap.

Prices come from `prices.yaml` in the project (USD per million input and output tokens, keyed by
model), never from code, because they change more often than releases do. They are not a stage
param: a new price reruns nothing (the cost figures of the next run use it). `evolver.prices` in
params.yaml overrides a model's price (and, being a param, reruns evolve when it changes). Batch
mode applies `evolver.batch_discount` (the providers charge half).

The budget cap is enforced before a request is sent: each request reserves its worst case
(estimated prompt tokens plus `max_tokens` of output) and settles to the actual usage when it is
answered, so the spend can never pass `evolver.budget_usd`, even with many requests in flight.
Once one request is refused, every later one is too: the run stops cleanly instead of trickling
on with whatever still fits.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evolinstruct.core import paths
from evolinstruct.core.errors import ParamsError


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


def load_prices(path: Path = paths.PRICES, overrides: Mapping[str, Mapping[str, float]] | None = None
                ) -> dict[str, dict[str, float]]:
    """The price table: `path` (prices.yaml; none when it does not exist), then `overrides`
    (`evolver.prices` from params) by model. A bad entry is one line naming the file and key."""
    import yaml
    from pydantic import NonNegativeFloat, TypeAdapter, ValidationError

    table: dict[str, dict[str, float]] = {}
    if path.exists():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        try:
            table = TypeAdapter(dict[str, dict[Literal["input", "output"], NonNegativeFloat]]).validate_python(data)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            key = ".".join(str(part) for part in error["loc"] if part != "[key]")
            raise ParamsError(str(path), key or "(top)", f"{error['msg']} (value {error.get('input')!r})",
                              "write `model: {input: USD, output: USD}` per million tokens") from None
    return {**table, **{model: dict(entry) for model, entry in (overrides or {}).items()}}


def price_for(prices: dict[str, dict[str, float]], model: str, discount: float = 1.0) -> Price | None:
    """The price of `model` from the params table (None when it is not listed), times `discount`.
    The params schema has already refused any key but `input` and `output`."""
    entry = prices.get(model)
    if entry is None:
        return None
    return Price(entry.get("input", 0.0) * discount, entry.get("output", 0.0) * discount)


class BudgetExhausted(Exception):
    """The request was not sent: it could have taken the spend past `evolver.budget_usd`."""


class Budget:
    """Tracks what this run has spent and refuses requests that could exceed `limit` (USD)."""

    def __init__(self, limit: float, price: Price) -> None:
        self.limit, self.price = limit, price
        self.spent = 0.0
        self.reserved = 0.0
        self.refused = 0
        self._lock = threading.Lock()

    def reserve(self, prompt_tokens: int, max_output_tokens: int) -> float:
        worst = self.price.cost(prompt_tokens, max_output_tokens)
        with self._lock:
            if self.refused or self.spent + self.reserved + worst > self.limit:
                self.refused += 1
                raise BudgetExhausted(
                    f"not sent: evolver.budget_usd {self.limit:.2f} would be exceeded "
                    f"(spent {self.spent:.4f}, in flight up to {self.reserved:.4f}, this request up to {worst:.4f})"
                )
            self.reserved += worst
            return worst

    def settle(self, reservation: float, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.reserved -= reservation
            self.spent += self.price.cost(prompt_tokens, completion_tokens)

    def release(self, reservation: float) -> None:
        with self._lock:
            self.reserved -= reservation
