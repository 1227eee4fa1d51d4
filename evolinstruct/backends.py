"""Evolver backends: the base class plugins subclass, and the `evolver` params group.

A backend turns prompts into completions. API backends implement `complete` (one request) and
`classify` (which errors are worth retrying), and inherit `complete_many`, which sends requests
through `dispatch` (concurrency, RPM/TPM limits, timeouts, retries, budget). Backends with a
provider batch API also implement `submit_batch` / `poll_batch` / `batch_results` for
`evolver.mode: batch`. Local backends override `complete_many` to batch on the device.
Keys come from the environment only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from evolinstruct.llm.dispatch import Control, Retry


@dataclass
class EvolverConfig:
    """The `evolver` params group. Paper settings (WizardLM/WizardCoder): temperature 1, top_p 0.9,
    max_tokens 2048, frequency_penalty 0."""

    backend: str = "openai"
    model: str = "gpt-3.5-turbo"
    #: Empty = the SDK default (which honours OPENAI_BASE_URL / ANTHROPIC_BASE_URL).
    base_url: str = ""
    #: Name of the environment variable that holds the key; empty = the backend's usual one.
    api_key_env: str = ""
    max_concurrency: int = 16
    temperature: float = 1.0
    top_p: float | None = 0.9
    max_tokens: int = 2048
    frequency_penalty: float = 0.0
    #: "online": one request per prompt. "batch": the provider's batch API (OpenAI Batch, Anthropic
    #: Message Batches; half the price, results within 24 h), resumable across restarts.
    mode: str = "online"
    #: Client-side limits, requests and tokens per minute (0 = none). Tokens count the prompt
    #: (estimated) plus max_tokens, as the providers count them.
    rpm: float = 0
    tpm: float = 0
    #: Hard wall-clock limit of one request attempt, in seconds.
    request_timeout: float = 600.0
    #: Retries of a request after 429, 5xx, timeouts and malformed bodies (jittered exponential
    #: backoff from retry_base_delay up to retry_max_delay; a longer retry-after is honoured).
    max_retries: int = 6
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    #: USD per million tokens, by model: {model: {input: ..., output: ...}}.
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Price factor in batch mode (both providers charge half).
    batch_discount: float = 0.5
    #: Stop cleanly, keeping every answer so far, before this run's spend could pass this (USD).
    #: 0 = no cap. Needs a price for the model.
    budget_usd: float = 0.0
    #: Batch mode: seconds between status polls, and the most requests per submitted batch.
    batch_poll_seconds: float = 30.0
    batch_max_requests: int = 10000
    #: The stage fails (after writing everything it has) when more than this share of records failed.
    max_failure_share: float = 0.05
    #: SQLite file of answered requests; reruns, resumes and experiments never pay for them twice.
    #: Empty = the user cache ($EVOLINSTRUCT_CACHE, else ~/.cache/evolinstruct/requests.sqlite),
    #: shared by every checkout and every `dvc exp` workspace.
    cache: str = ""
    #: transformers backend: hub revision (commit, tag or branch) of `model`, batch size and device.
    revision: str = ""
    batch_size: int = 8
    device: str = "auto"


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float | None
    max_tokens: int
    frequency_penalty: float = 0.0

    @classmethod
    def from_config(cls, config: EvolverConfig) -> Sampling:
        return cls(config.temperature, config.top_p, config.max_tokens, config.frequency_penalty)

    def to_json(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
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


class Backend:
    """Base class for evolver backends (see the `register_backends` hook)."""

    name: ClassVar[str] = ""
    #: True when the backend implements the batch methods below.
    supports_batch: ClassVar[bool] = False

    def __init__(self, config: EvolverConfig) -> None:
        self.config = config

    def check_ready(self) -> None:
        """Raise an EvolError (for example MissingSecretError) before any work starts."""

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        raise NotImplementedError(f"backend '{self.name}' implements neither complete nor complete_many")

    def classify(self, error: BaseException) -> Retry | None:
        """Say whether `error` (raised by `complete`) is worth retrying: a `Retry` (with the server's
        retry-after, if any) or None for errors that would fail again (bad request, auth).
        The base class retries connection errors and malformed bodies."""
        from evolinstruct.llm.dispatch import MalformedResponse, Retry

        if isinstance(error, MalformedResponse | ConnectionError):
            return Retry()
        return None

    def control(self) -> Control:
        """How `complete_many` sends requests when the caller does not say: from `evolver` params."""
        from evolinstruct.llm.dispatch import Control, RateLimiter, RetryPolicy

        c = self.config
        return Control(
            concurrency=c.max_concurrency,
            policy=RetryPolicy(c.max_retries, c.retry_base_delay, c.retry_max_delay, c.request_timeout),
            limiter=RateLimiter(c.rpm, c.tpm) if c.rpm or c.tpm else None,
        )

    async def complete_many(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        on_done: Callable[[int, Completion | BaseException], None],
        control: Control | None = None,
    ) -> None:
        """Answer every prompt, calling ``on_done(index, completion_or_error)`` as each finishes.

        Errors are passed to `on_done`, never raised: one bad request must not stop the others.
        """
        from evolinstruct.llm.dispatch import dispatch

        await dispatch(self, prompts, sampling, on_done, control or self.control())

    async def submit_batch(self, requests: Sequence[tuple[str, str]], sampling: Sampling) -> str:
        """Submit `(custom_id, prompt)` pairs as one provider batch and return its id."""
        raise NotImplementedError(f"backend '{self.name}' has no batch API")

    async def poll_batch(self, batch_id: str) -> BatchStatus:
        """The batch's current status."""
        raise NotImplementedError(f"backend '{self.name}' has no batch API")

    async def batch_results(self, batch_id: str) -> dict[str, Completion]:
        """The answers of an ended batch by custom_id; failed and expired requests are absent."""
        raise NotImplementedError(f"backend '{self.name}' has no batch API")

    async def aclose(self) -> None:
        """Release clients and models."""
