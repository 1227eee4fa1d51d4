"""Evolver backends: the base class plugins subclass, and the `evolver` params group.

A backend turns prompts into completions. API backends implement `complete` (one request) and
inherit `complete_many`, which runs requests concurrently under `evolver.max_concurrency`;
local backends override `complete_many` to batch. Keys come from the environment only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar


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
    request_timeout: float = 600.0
    max_retries: int = 6
    #: The stage fails (after writing everything it has) when more than this share of records failed.
    max_failure_share: float = 0.05
    #: SQLite file of answered requests; reruns and resumes never pay for them twice.
    cache: str = ".evolinstruct/requests.sqlite"
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


class RequestFailed(Exception):
    """A request that could not be answered after the backend's retries."""


class Backend:
    """Base class for evolver backends (see the `register_backends` hook)."""

    name: ClassVar[str] = ""

    def __init__(self, config: EvolverConfig) -> None:
        self.config = config

    def check_ready(self) -> None:
        """Raise an EvolError (for example MissingSecretError) before any work starts."""

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        raise NotImplementedError(f"backend '{self.name}' implements neither complete nor complete_many")

    async def complete_many(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        on_done: Callable[[int, Completion | BaseException], None],
    ) -> None:
        """Answer every prompt, calling ``on_done(index, completion_or_error)`` as each finishes.

        Errors are passed to `on_done`, never raised: one bad request must not stop the others.
        """
        limit = asyncio.Semaphore(max(1, self.config.max_concurrency))

        async def one(index: int, prompt: str) -> None:
            async with limit:
                try:
                    result: Completion | BaseException = await self.complete(prompt, sampling)
                except Exception as exc:  # reported per record, with the reason
                    result = exc
            on_done(index, result)

        await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))

    async def aclose(self) -> None:
        """Release clients and models."""
