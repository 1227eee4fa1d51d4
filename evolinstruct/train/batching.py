"""Token-budget micro-batches that keep the paper's batch semantics.

An optimizer step sees `global_batch_size` examples (512 in the paper), drawn by a seeded shuffle
that does not depend on how the step is then split; so the padded and the padding-free paths, or
1 GPU and 8, train on the same global batches and their loss curves agree. Each global batch is
split into micro-batches by a token budget rather than an example count, so a micro-batch of short
examples holds many and one of long examples few, and no memory is wasted on a fixed count sized
for the worst case.

Every rank gets the same number of micro-batches in a step (ZeRO-3 gathers parameters in every
forward, so ranks must run in lockstep), balanced by tokens. The loss of a micro-batch is its sum
over response tokens divided by the response tokens of the whole global batch over every rank
(`Step.response_tokens`), so the gradient does not depend on the split: the known gradient
accumulation bug of averaging per micro-batch is avoided by construction.

Pure Python on purpose: the plan is computed on the host from example lengths alone, once per
epoch, so training never waits on the device to count tokens.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One optimizer step for one rank."""

    #: Example indices of each micro-batch this rank runs (the same count on every rank).
    micro_batches: tuple[tuple[int, ...], ...]
    #: Response (loss) tokens of the whole global batch, over every rank: the loss denominator.
    response_tokens: int
    #: Over the whole global batch (every rank): its tokens, what its micro-batches compute including
    #: padding, and its examples. Counted from the plan, so nothing waits on the device.
    real_tokens: int
    computed_tokens: int
    examples: int


def global_batches(n: int, global_batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's shuffled global batches (the last one may be short), the same on every rank."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[i:i + global_batch_size] for i in range(0, n, global_batch_size)]


def cost(lengths: Sequence[int], batch: Sequence[int], padding_free: bool) -> int:
    """Tokens a micro-batch computes: the sum of lengths packed, or longest x count padded."""
    if not batch:
        return 0
    if padding_free:
        return sum(lengths[i] for i in batch)
    return max(lengths[i] for i in batch) * len(batch)


def _pack(lengths: Sequence[int], batch: list[int], bins: int, budget: int) -> list[list[int]] | None:
    """Longest first into the least-filled bin: balanced bins, each within the budget (an example
    longer than the budget goes alone into an empty one), or None."""
    heap = [(0, b) for b in range(bins)]
    out: list[list[int]] = [[] for _ in range(bins)]
    for i in sorted(batch, key=lambda i: -lengths[i]):
        load, b = heapq.heappop(heap)
        if load and load + lengths[i] > budget:
            return None
        out[b].append(i)
        heapq.heappush(heap, (load + lengths[i], b))
    return out


def _bucket(lengths: Sequence[int], batch: list[int], bins: int, budget: int) -> list[list[int]] | None:
    """Sorted by length and cut into `bins` runs of similar length (little padding), each run's
    padded size within the budget, or None."""
    ordered = sorted(batch, key=lambda i: -lengths[i])
    runs: list[list[int]] = []
    for i in ordered:
        if runs and lengths[runs[-1][0]] * (len(runs[-1]) + 1) <= budget:
            runs[-1].append(i)
        else:
            runs.append([i])
    if len(runs) > bins:
        return None
    while len(runs) < bins:  # split the run with most examples, so that every rank has work
        widest = max(range(len(runs)), key=lambda r: len(runs[r]))
        if len(runs[widest]) < 2:
            break
        run = runs.pop(widest)
        runs[widest:widest] = [run[:len(run) // 2], run[len(run) // 2:]]
    return runs + [[] for _ in range(bins - len(runs))]


def split(lengths: Sequence[int], batch: list[int], world: int, budget: int,
          padding_free: bool) -> list[list[list[int]]]:
    """Split one global batch into `world` ranks x A micro-batches, with A as small as the budget
    allows (it always fits once every micro-batch holds one example). Returns micro-batches per rank; one can be empty when there are fewer examples than
    micro-batches (the trainer runs it as a zero-weight forward, keeping the ranks in lockstep)."""
    micro = max(1, math.ceil(sum(lengths[i] for i in batch) / (world * budget)))
    place = _pack if padding_free else _bucket
    while (bins := place(lengths, batch, world * micro, budget)) is None:
        micro += 1
    return [bins[r::world] for r in range(world)]


def plan_epoch(lengths: Sequence[int], response_tokens: Sequence[int], global_batch_size: int, world: int,
               rank: int, budget: int, padding_free: bool, seed: int, epoch: int) -> list[Step]:
    """This rank's steps for one epoch. `budget` is the most tokens a micro-batch computes; an
    example longer than it is a micro-batch of its own."""
    steps = []
    for batch in global_batches(len(lengths), global_batch_size, seed, epoch):
        ranks = split(lengths, batch, world, budget, padding_free)
        steps.append(Step(
            micro_batches=tuple(tuple(m) for m in ranks[rank]),
            response_tokens=sum(response_tokens[i] for i in batch),
            real_tokens=sum(lengths[i] for i in batch),
            computed_tokens=sum(cost(lengths, m, padding_free) for mine in ranks for m in mine),
            examples=len(batch),
        ))
    return steps
