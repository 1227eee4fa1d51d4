"""Sending many API requests well: bounded concurrency, client-side RPM/TPM limits, a hard
per-request timeout, and retries with jittered exponential backoff that honour `retry-after`.

This lives in core rather than in each backend so that every API backend, built-in or third-party,
gets the same behaviour and the same progress counters. A backend only says which of its errors
are worth retrying (`Backend.classify`). The SDKs' own retries are switched off so that each
attempt passes through the rate limiter and is counted.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evolinstruct.llm.backends import Backend, Completion, Sampling
    from evolinstruct.llm.cost import Budget


_timeout = getattr(asyncio, "timeout", None)


@dataclass(frozen=True)
class Retry:
    """A retryable error; `after` is the server's `retry-after` in seconds, when it sent one."""

    after: float | None = None


class MalformedResponse(Exception):
    """The server answered 2xx with a body the backend cannot use (retried like a 5xx)."""


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate (about 4 characters per token for English and code).

    Used for TPM limits, budget reservations and `evol estimate`; actual usage reported by the
    API replaces it in the metrics.
    """
    return max(1, math.ceil(len(text) / 4))


class RateLimiter:
    """Token buckets for requests per minute and tokens per minute (0 = no limit).

    A bucket holds at most ten seconds' worth, so a fresh run does not fire a whole minute's quota
    at once (providers enforce limits over short windows too). `clock` and `sleep` are injectable
    for tests.
    """

    def __init__(
        self,
        rpm: float = 0,
        tpm: float = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock, self.sleep = clock, sleep
        self._buckets = [_Bucket(limit / 60.0, max(1.0, limit / 6.0), clock()) for limit in (rpm, tpm) if limit > 0]
        self._kinds = [kind for kind, limit in (("requests", rpm), ("tokens", tpm)) if limit > 0]
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of about `tokens` tokens fits under both limits, then take it."""
        if not self._buckets:
            return
        wants = [1.0 if kind == "requests" else float(tokens) for kind in self._kinds]
        async with self._lock:  # first come, first served: a big request is not starved
            while True:
                now = self.clock()
                waits = [bucket.wait(min(want, bucket.capacity), now) for bucket, want in zip(self._buckets, wants, strict=True)]
                if max(waits) <= 0:
                    for bucket, want in zip(self._buckets, wants, strict=True):
                        bucket.take(min(want, bucket.capacity))
                    return
                await self.sleep(max(waits))


@dataclass
class _Bucket:
    rate: float  # units per second
    capacity: float
    updated: float
    level: float = field(init=False)

    def __post_init__(self) -> None:
        self.level = self.capacity

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self, want: float, now: float) -> float:
        self._refill(now)
        return 0.0 if self.level >= want else (want - self.level) / self.rate

    def take(self, want: float) -> None:
        self.level -= want


@dataclass
class RetryPolicy:
    """Jittered exponential backoff ("full jitter"): attempt n waits uniform(0, min(cap, base*2^n)),
    or the server's retry-after when it is longer."""

    max_retries: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    #: Hard wall-clock limit of one attempt, in seconds, enforced here whatever the SDK does.
    timeout: float = 600.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry: Retry) -> float:
        backoff = self.rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))
        return max(backoff, min(retry.after or 0.0, self.max_delay * 10))


@dataclass
class Control:
    """Everything that governs how one batch of prompts is sent."""

    concurrency: int = 16
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: RateLimiter | None = None
    budget: Budget | None = None
    on_retry: Callable[[BaseException], None] | None = None


class RetriesExhausted(Exception):
    """Every attempt of a request failed; carries the last error as the reason."""


async def dispatch(
    backend: Backend,
    prompts: Sequence[str],
    sampling: Sampling,
    on_done: Callable[[int, Completion | BaseException], None],
    control: Control,
) -> None:
    """Answer every prompt through `backend.complete`, calling `on_done(index, result)` as each
    finishes. Errors (exhausted retries, a refused budget, a non-retryable API error) are passed
    to `on_done`, never raised, so one bad request cannot stop the others."""
    slots = asyncio.Semaphore(max(1, control.concurrency))
    policy = control.policy

    async def attempt(prompt: str, tokens: int) -> Completion:
        if control.limiter:
            await control.limiter.acquire(tokens)
        if _timeout is None:  # Python 3.10
            return await asyncio.wait_for(backend.complete(prompt, sampling), policy.timeout)
        async with _timeout(policy.timeout):  # no extra task per attempt, unlike wait_for
            return await backend.complete(prompt, sampling)

    async def one(index: int, prompt: str) -> None:
        prompt_tokens = estimate_tokens(prompt)
        tokens = prompt_tokens + sampling.max_tokens
        result: Completion | BaseException
        async with slots:
            reservation = None
            try:
                if control.budget:
                    reservation = control.budget.reserve(prompt_tokens, sampling.max_tokens)
                for n in range(policy.max_retries + 1):
                    try:
                        result = await attempt(prompt, tokens)
                        break
                    except Exception as exc:
                        retry = Retry() if isinstance(exc, TimeoutError) else backend.classify(exc)
                        if retry is None:
                            raise
                        if n == policy.max_retries:
                            raise RetriesExhausted(
                                f"{n + 1} attempts failed; last: {type(exc).__name__}: {exc}"
                            ) from exc
                        if control.on_retry:
                            control.on_retry(exc)
                        await asyncio.sleep(policy.delay(n, retry))
                if control.budget and reservation is not None:
                    control.budget.settle(reservation, result.prompt_tokens, result.completion_tokens)
                    reservation = None
            except Exception as exc:  # a refused budget too: reported per record, with the reason
                result = exc
            finally:
                if control.budget and reservation is not None:
                    control.budget.release(reservation)
        on_done(index, result)

    await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
