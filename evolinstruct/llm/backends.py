"""Evolver backends: the base class plugins subclass (configured by the `evolver` params group).

A backend turns prompts into completions. API backends implement `complete` (one request) and
`classify` (which errors are worth retrying), and inherit `complete_many`, which sends requests
through `dispatch` (concurrency, RPM/TPM limits, timeouts, retries, budget). Backends with a
provider batch API also implement `submit_batch` / `poll_batch` / `batch_results` for
`evolver.mode: batch`. Local backends override `complete_many` to batch on the device.
Keys come from the environment only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from evolinstruct.core.params import EvolverConfig  # noqa: F401  (the `evolver` group; plugins import it from here)
from evolinstruct.llm.dispatch import MalformedResponse, control_for, dispatch
from evolinstruct.llm.types import (  # noqa: F401  (re-exported: plugins import them from here)
    BatchStatus,
    Completion,
    Control,
    Fatal,
    RequestInfo,
    Retry,
    Sampling,
    _current_request,
    current_request,
)


class ProviderError(Exception):
    """The provider failed a request in a way that retrying will not fix (a refused or invalid
    request, an authentication error, a content filter). Raise it from ``complete`` so the request
    is recorded as failed, as a provider failure rather than a bug in the backend."""


class Backend:
    """Base class for evolver backends (see the `register_backends` hook and "The backend contract"
    in docs/plugins.md). Subclass it, set ``name`` (the value of ``evolver.backend``), and implement
    ``complete`` (API backends: core dispatch adds concurrency, rate limits, timeouts, retries and
    the budget) or override ``complete_many`` (local backends that batch on a device). Constructed
    with the ``evolver`` params group as ``config``; ``plugin_params`` holds the plugin's own params.
    """

    name: ClassVar[str] = ""
    #: True when the backend implements the batch methods below.
    supports_batch: ClassVar[bool] = False
    #: `evolver.hedge_after` when params leave it unset: 0 (off) for paid APIs, where a hedge may be
    #: paid twice; backends for self-hosted servers may turn it on.
    default_hedge_after: ClassVar[float] = 0.0

    def __init__(self, config: EvolverConfig) -> None:
        self.config = config
        #: This backend's plugin params (its ``plugins.<name>`` group, validated by its
        #: ``params_schema``), set by the registry before ``check_ready``; None without a schema.
        self.plugin_params: Any = None

    def check_ready(self) -> None:
        """Raise an EvolError (for example MissingSecretError) before any work starts."""

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        """Answer one prompt (an evolve, answer or judge request; see `current_request`) with
        `sampling`. Raise on failure: `classify` says whether to retry, `provider_failure` whether
        the error is the provider's or a bug. Called concurrently, up to `evolver.max_concurrency`."""
        raise NotImplementedError(f"backend '{self.name}' implements neither complete nor complete_many")

    def classify(self, error: BaseException) -> Retry | None:
        """Say whether `error` (raised by `complete`) is worth retrying: a `Retry` (with the server's
        retry-after, if any) or None for errors that would fail again (bad request, auth).
        The base class retries connection errors and malformed bodies."""
        if isinstance(error, MalformedResponse | ConnectionError):
            return Retry()
        return None

    def provider_failure(self, error: BaseException) -> bool:
        """Whether `error` (raised by `complete` and not retried) is the provider's failure rather
        than a bug in this backend. A bug is logged with its traceback and the plugin's
        distribution. The base class counts ProviderError, MalformedResponse and OSError
        (connection errors, timeouts); SDK backends add their SDK's error classes."""
        return isinstance(error, ProviderError | MalformedResponse | OSError)

    def fatal(self, error: BaseException) -> Fatal | None:
        """Say whether `error` (non-retryable, or the last of a request's retries) is one that every
        request would meet, so the run should stop instead of failing record after record: a
        `Fatal` whose kind is "auth" (401), "not_found" (404: model or path), "bad_request" (a 400
        for the request's shape) or "unreachable" (no connection), with one line naming the status,
        the provider's message, the base URL and the key variable's name (never its value).
        Optional: the base class says None (never stop), so older backends keep working."""
        return None

    def control(self) -> Control:
        """How `complete_many` sends requests when the caller does not say: from `evolver` params."""
        return control_for(self.config, self.default_hedge_after)

    async def complete_many(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        on_done: Callable[[int, Completion | BaseException], None],
        control: Control | None = None,
    ) -> None:
        """Answer every prompt, calling ``on_done(index, completion_or_error)`` as each finishes.

        Errors are passed to `on_done`, never raised: one bad request must not stop the others.
        The one exception is `dispatch.FatalRequestError` (every request would fail: a wrong key,
        model or address, see `fatal`), raised once the other requests are cancelled.
        """
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
