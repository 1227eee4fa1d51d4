"""The types that every part of `llm/` shares: how a request is sampled (`Sampling`), what came
back (`Completion`, `BatchStatus`), what a backend says about an error (`Retry`, `Fatal`,
`MalformedResponse`), and how a run sends its requests (`Control`, `RetryPolicy`, `Breaker`).

They live here, below both `backends` (the base class plugins subclass) and `dispatch` (the
machinery that sends), so that each imports them and neither imports the other's internals:
imports flow backends -> dispatch -> types, with no cycle.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from evolinstruct.core.params import EvolverConfig

if TYPE_CHECKING:
    from evolinstruct.llm.cost import Budget


class Limiter(Protocol):
    """A client-side rate limit (`dispatch.RateLimiter`): wait until a request of `tokens` fits."""

    async def acquire(self, tokens: int) -> None: ...


class Source(Protocol):
    """What `dispatch` needs of a backend (`backends.Backend` is one)."""

    name: str

    async def complete(self, prompt: str, sampling: Sampling) -> Completion: ...

    def classify(self, error: BaseException) -> Retry | None: ...

    def provider_failure(self, error: BaseException) -> bool: ...

    def fatal(self, error: BaseException) -> Fatal | None: ...


@dataclass(frozen=True)
class RequestInfo:
    """What a request is for, readable inside ``complete`` with :func:`current_request`: ``kind``
    is "evolve" (a heuristic's prompt rewriting an instruction), "answer" (the evolved instruction,
    to be answered) or "judge" (an LLM filter's question, ``filter`` naming it); ``round`` is the
    evolution round (1-based). Backends must not need it: the same prompt always deserves the same
    answer, and the request cache assumes so."""

    kind: str
    round: int
    filter: str | None = None


_current_request: ContextVar[RequestInfo | None] = ContextVar("evolinstruct_request", default=None)


def current_request() -> RequestInfo | None:
    """The :class:`RequestInfo` of the requests being sent (None outside the evolve stage): for a
    backend's logging or metrics, never for changing the answer."""
    return _current_request.get()


@dataclass(frozen=True)
class Sampling:
    """How to sample one request, from the ``evolver`` params group: the same for every request of
    a run (evolve, answer and judge prompts alike)."""

    temperature: float
    top_p: float | None
    max_tokens: int
    frequency_penalty: float = 0.0
    #: `evolver.system_message`: sent as the system message of every request when not empty.
    system: str = ""

    @classmethod
    def from_config(cls, config: EvolverConfig) -> Sampling:
        return cls(config.temperature, config.top_p, config.max_tokens, config.frequency_penalty,
                   config.system_message)

    def to_json(self) -> dict[str, float | int | str | None]:
        data = asdict(self)
        if not self.system:  # absent when empty, so request keys cached before it existed still match
            del data["system"]
        return data


@dataclass(frozen=True)
class Completion:
    """A backend's answer to one prompt. Token counts are the provider's (0 when unknown); they feed
    the cost metrics and the budget."""

    text: str
    #: "stop", or "length" when the token limit cut the answer off.
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class BatchStatus:
    """A provider batch as last polled: `ended` once no more results will come (completed,
    expired, cancelled or failed); `done` of `total` requests have finished either way."""

    ended: bool
    done: int = 0
    total: int = 0
    state: str = ""


@dataclass(frozen=True)
class Retry:
    """A retryable error; `after` is the server's `retry-after` in seconds, when it sent one."""

    after: float | None = None


class MalformedResponse(Exception):
    """The server answered 2xx with a body the backend cannot use (retried like a 5xx)."""


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


@dataclass(frozen=True)
class Fatal:
    """What a backend says about an error that every request would meet (a wrong key, model or
    address, or a plugin that broke its contract): `kind` is "auth", "not_found", "bad_request",
    "unreachable" or "plugin", `message` one line naming the status, the provider's message, the
    base URL and the key variable (never its value)."""

    kind: str
    message: str


class FatalRequestError(Exception):
    """Every request would fail the same way: the stage stops at once, saying why."""

    def __init__(self, fatal: Fatal) -> None:
        super().__init__(fatal.message)
        self.fatal = fatal


class Stopped(Exception):
    """The run is stopping (budget, failure share, a fatal error): this request was not sent."""


#: A 400 before anything was answered (the request's shape), or an unreachable server after some
#: answers, stops the run once this many requests in a row met it with no answer in between.
REPEATS_TO_STOP = 3


class Breaker:
    """Decides, as results arrive, that the run cannot succeed: a wrong key (401), no access (403),
    an unknown model or path (404) stop it at the first answer; an unreachable server (retries
    exhausted) at once when nothing was ever answered, else once it repeats; a 400 when it repeats
    before anything was answered (every request has the same shape, so a 400 after an answer is
    about one prompt, such as one too long, and fails only its record)."""

    def __init__(self) -> None:
        self.answered = 0
        self.in_a_row = 0
        self.tripped: Fatal | None = None

    def success(self) -> None:
        self.answered += 1
        self.in_a_row = 0

    def failure(self, fatal: Fatal | None) -> None:
        if fatal is None:
            return
        if self.tripped:  # the other requests of the first wave meet it too: stop, not per-record failures
            raise FatalRequestError(self.tripped)
        self.in_a_row += 1
        # Every request has the same shape, so once one was answered a 400 is about its prompt.
        if fatal.kind in ("auth", "not_found", "plugin") or (fatal.kind == "unreachable" and not self.answered) \
                or (self.in_a_row >= REPEATS_TO_STOP and (fatal.kind == "unreachable" or not self.answered)):
            self.tripped = fatal
            raise FatalRequestError(fatal)


@dataclass
class Control:
    """Everything that governs how one run's prompts are sent."""

    concurrency: int = 16
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: Limiter | None = None
    budget: Budget | None = None
    on_retry: Callable[[BaseException], None] | None = None
    #: Hedged requests: re-send an attempt that has waited more than `hedge_after` times the
    #: running p95 latency; the first answer wins. 0 = off.
    hedge_after: float = 0.0
    breaker: Breaker = field(default_factory=Breaker)


#: A request is never hedged before it has waited this long (seconds), whatever the p95.
HEDGE_FLOOR = 1.0
