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
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from evolinstruct.core.params import EvolverConfig
from evolinstruct.core.plugin_code import plugin_failure
from evolinstruct.llm.types import (  # noqa: F401  (re-exported: plugins import them from here)
    HEDGE_FLOOR,
    REPEATS_TO_STOP,
    Breaker,
    Completion,
    Control,
    Fatal,
    FatalRequestError,
    MalformedResponse,
    Retry,
    RetryPolicy,
    Sampling,
    Source,
    Stopped,
)

_timeout = getattr(asyncio, "timeout", None)


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


def control_for(config: EvolverConfig, default_hedge_after: float = 0.0) -> Control:
    """How one run sends its requests, from the `evolver` params group: the one place that reads
    `evolver.max_concurrency` (everything else asks the Control)."""
    c = config
    return Control(
        concurrency=c.max_concurrency,
        policy=RetryPolicy(c.max_retries, c.retry_base_delay, c.retry_max_delay, c.request_timeout),
        limiter=RateLimiter(c.rpm, c.tpm) if c.rpm or c.tpm else None,
        hedge_after=default_hedge_after if c.hedge_after is None else c.hedge_after,
    )


#: A refused connection before anything was answered is retried for this long (seconds), at most
#: UNREACHABLE_RETRY_DELAY apart, then the run stops naming the address: well within 5 s of the
#: start, where the full backoff (6 retries from 1 s, doubling) took about 30 s.
UNREACHABLE_GRACE = 1.0
UNREACHABLE_RETRY_DELAY = 0.25


class RetriesExhausted(Exception):
    """Every attempt of a request failed; carries the last error as the reason."""


def retry_reason(error: BaseException) -> str:
    """A short reason for a retried error, for the progress line: 429, 5xx, timeout, malformed, connection."""
    if isinstance(error, TimeoutError) or "Timeout" in type(error).__name__:
        return "timeout"
    if isinstance(error, MalformedResponse):
        return "malformed"
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return "5xx" if status >= 500 else str(status)
    return "connection"


class Sender:
    """Sends one prompt at a time under a run's shared concurrency bound, rate limiter, budget,
    retries, hedging and breaker, and knows what is in flight (for the progress line).

    `send` returns the Completion or raises: RetriesExhausted, BudgetExhausted, the backend's
    non-retryable error, FatalRequestError (the run must stop) or Stopped (it is stopping)."""

    def __init__(self, backend: Source, sampling: Sampling, control: Control) -> None:
        self.backend, self.sampling, self.control = backend, sampling, control
        self.slots = asyncio.Semaphore(max(1, control.concurrency))
        self.stopping = False
        self.in_flight: dict[int, float] = {}  # attempt id -> start time
        self.latencies: list[float] = []  # recent answered attempts, for the hedging threshold
        self.retries: dict[str, int] = {}
        self.hedges = 0
        self._hedging = 0  # hedge copies in flight (at most concurrency / 8)
        self._ids = 0
        self._unreachable_since: float | None = None  # first refused connection, while nothing was answered

    def oldest_in_flight(self) -> float:
        """Age in seconds of the oldest attempt in flight (0 when none)."""
        return time.monotonic() - min(self.in_flight.values()) if self.in_flight else 0.0

    def _p95(self) -> float | None:
        if len(self.latencies) < 20:
            return None
        ordered = sorted(self.latencies[-500:])
        return ordered[int(0.95 * (len(ordered) - 1))]

    async def _attempt(self, prompt: str, tokens: int) -> Completion:
        control, policy = self.control, self.control.policy
        if control.limiter:
            await control.limiter.acquire(tokens)
        self._ids += 1
        ident = self._ids
        started = self.in_flight[ident] = time.monotonic()
        try:
            if _timeout is None:  # Python 3.10
                result = await asyncio.wait_for(self.backend.complete(prompt, self.sampling), policy.timeout)
            else:
                async with _timeout(policy.timeout):  # no extra task per attempt, unlike wait_for
                    result = await self.backend.complete(prompt, self.sampling)
        finally:
            del self.in_flight[ident]
        self.latencies.append(time.monotonic() - started)
        if len(self.latencies) > 1000:
            del self.latencies[:500]
        return result

    async def _hedged(self, prompt: str, tokens: int, on_hedge: Callable[[], None] | None) -> Completion:
        """One attempt; when hedging is on and it outlives `hedge_after` x p95, a second copy races it."""
        p95 = self._p95() if self.control.hedge_after > 0 else None
        if p95 is None:
            return await self._attempt(prompt, tokens)
        first = asyncio.ensure_future(self._attempt(prompt, tokens))
        try:
            done, _ = await asyncio.wait({first}, timeout=max(HEDGE_FLOOR, self.control.hedge_after * p95))
        except BaseException:
            first.cancel()
            raise
        if done or self._hedging >= max(1, self.control.concurrency // 8):
            return await first  # answered, or too many hedges in flight already: wait for this one
        self.hedges += 1
        self._hedging += 1
        if on_hedge:
            on_hedge()
        second = asyncio.ensure_future(self._attempt(prompt, tokens))
        racing = {first, second}
        try:
            while racing:
                done, racing = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None:
                        return task.result()
                if not racing:
                    return done.pop().result()  # both failed: raise the last one's error
        finally:
            self._hedging -= 1
            for task in racing:
                task.cancel()
        raise AssertionError("unreachable")

    def _unreachable(self, error: BaseException) -> bool:
        """Whether `error` is a refused connection (the backend's `fatal` says "unreachable")
        before any request was answered: a wrong address or a server that is down, retried for
        UNREACHABLE_GRACE seconds (a server still starting up) rather than with the full backoff."""
        if self.control.breaker.answered:
            return False
        fatal = self.backend.fatal(error)
        if fatal is None or fatal.kind != "unreachable":
            return False
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
        return True

    def _check_fatal(self, error: BaseException) -> None:
        """Raise FatalRequestError when the breaker trips, and send nothing more from then on."""
        try:
            self.control.breaker.failure(self.backend.fatal(error))
        except FatalRequestError:
            self.stopping = True  # before this request's slot is released to the next one
            raise

    async def send(self, prompt: str, on_retry: Callable[[BaseException], None] | None = None,
                   on_hedge: Callable[[], None] | None = None) -> Completion:
        if self.stopping:
            raise Stopped("not sent: the run is stopping")
        control, policy, sampling = self.control, self.control.policy, self.sampling
        prompt_tokens = estimate_tokens(prompt)
        tokens = prompt_tokens + sampling.max_tokens
        async with self.slots:
            if self.stopping:
                raise Stopped("not sent: the run is stopping")
            reservation = control.budget.reserve(prompt_tokens, sampling.max_tokens) if control.budget else None
            try:
                for n in range(policy.max_retries + 1):
                    try:
                        result = await self._hedged(prompt, tokens, on_hedge)
                        break
                    except Exception as exc:
                        retry = Retry() if isinstance(exc, TimeoutError) else self.backend.classify(exc)
                        if retry is None:
                            self._check_fatal(exc)
                            if not self.backend.provider_failure(exc):  # a bug in the backend, not the provider
                                raise plugin_failure("backend", self.backend.name, exc) from exc
                            raise
                        if n == policy.max_retries:
                            self._check_fatal(exc)
                            raise RetriesExhausted(
                                f"{n + 1} attempts failed; last: {type(exc).__name__}: {exc}"
                            ) from exc
                        delay = policy.delay(n, retry)
                        if self._unreachable(exc):  # nothing answered yet and no connection: fail fast
                            if time.monotonic() - self._unreachable_since >= UNREACHABLE_GRACE:
                                self._check_fatal(exc)  # the breaker trips: nothing was ever answered
                            delay = min(delay, UNREACHABLE_RETRY_DELAY)
                        reason = retry_reason(exc)
                        self.retries[reason] = self.retries.get(reason, 0) + 1
                        for callback in (control.on_retry, on_retry):
                            if callback:
                                callback(exc)
                        await asyncio.sleep(delay)
                        if self.stopping:
                            raise Stopped("not sent again: the run is stopping") from exc
                control.breaker.success()
                if control.budget and reservation is not None:
                    control.budget.settle(reservation, result.prompt_tokens, result.completion_tokens)
                    reservation = None
                return result
            finally:
                if control.budget and reservation is not None:
                    control.budget.release(reservation)


async def dispatch(
    backend: Source,
    prompts: Sequence[str],
    sampling: Sampling,
    on_done: Callable[[int, Completion | BaseException], None],
    control: Control,
) -> None:
    """Answer every prompt through `backend.complete`, calling `on_done(index, result)` as each
    finishes. Errors (exhausted retries, a refused budget, a non-retryable API error) are passed
    to `on_done`, never raised, so one bad request cannot stop the others, except a
    FatalRequestError (a wrong key, model or address): it cancels the rest and is raised."""
    sender = Sender(backend, sampling, control)

    async def one(index: int, prompt: str) -> None:
        try:
            result: Completion | BaseException = await sender.send(prompt)
        except FatalRequestError:
            raise
        except Exception as exc:  # a refused budget too: reported per record, with the reason
            result = exc
        on_done(index, result)

    tasks = [asyncio.ensure_future(one(i, p)) for i, p in enumerate(prompts)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
