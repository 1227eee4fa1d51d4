"""Built-in API backends: OpenAI (Chat Completions), Anthropic (Messages), and any OpenAI-compatible
server by base URL (vLLM, TGI, Ollama, llama.cpp).

The real SDK clients are used; they retry 429 (honouring retry-after), 5xx and timeouts with
jittered exponential backoff, `evolver.max_retries` times. Keys come from the environment only
and are never logged, cached or written to params.
"""

from __future__ import annotations

import os
from typing import Any

from evolinstruct.backends import Backend, Completion, EvolverConfig, Sampling
from evolinstruct.errors import MissingSecretError
from evolinstruct.hookspecs import hookimpl

DEMO_HINT = "or run the offline demo, which needs no key: make demo"


def _key_from_env(config: EvolverConfig, default_env: str, required: bool) -> str | None:
    env = config.api_key_env or default_env
    key = os.environ.get(env)
    if not key and required:
        raise MissingSecretError(
            f"evolver.backend '{config.backend}' needs an API key, and {env} is not set",
            f"export {env}=... in the shell that runs dvc (keys are read from the environment only, "
            f"never from params.yaml), {DEMO_HINT}",
        )
    return key


class OpenAIBackend(Backend):
    name = "openai"
    key_env = "OPENAI_API_KEY"
    key_required = True

    def __init__(self, config: EvolverConfig) -> None:
        super().__init__(config)
        self._client: Any = None

    def check_ready(self) -> None:
        _key_from_env(self.config, self.key_env, self.key_required)

    def client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                api_key=_key_from_env(self.config, self.key_env, self.key_required) or "unused",
                base_url=self.config.base_url or None,  # None: the SDK default, honouring OPENAI_BASE_URL
                timeout=self.config.request_timeout,
                max_retries=self.config.max_retries,
            )
        return self._client

    def sampling_args(self, sampling: Sampling) -> dict[str, Any]:
        args: dict[str, Any] = {"temperature": sampling.temperature, "max_tokens": sampling.max_tokens}
        if sampling.top_p is not None:
            args["top_p"] = sampling.top_p
        if sampling.frequency_penalty:
            args["frequency_penalty"] = sampling.frequency_penalty
        return args

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        response = await self.client().chat.completions.create(
            model=self.config.model,
            messages=[{"role": "user", "content": prompt}],
            **self.sampling_args(sampling),
        )
        if not response.choices:
            raise ValueError("the response has no choices")
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


class OpenAICompatibleBackend(OpenAIBackend):
    """A self-hosted OpenAI-compatible server: `evolver.base_url` is required, a key is optional."""

    name = "openai_compatible"
    key_env = "OPENAI_API_KEY"
    key_required = False

    def check_ready(self) -> None:
        if not (self.config.base_url or os.environ.get("OPENAI_BASE_URL")):
            raise MissingSecretError(
                "evolver.backend 'openai_compatible' needs the server's address",
                "set evolver.base_url (for example http://localhost:8000/v1 for vLLM) or OPENAI_BASE_URL",
            )


class AnthropicBackend(Backend):
    name = "anthropic"
    key_env = "ANTHROPIC_API_KEY"

    def __init__(self, config: EvolverConfig) -> None:
        super().__init__(config)
        self._client: Any = None

    def check_ready(self) -> None:
        _key_from_env(self.config, self.key_env, True)

    def client(self) -> Any:
        if self._client is None:
            from anthropic import AsyncAnthropic

            self._client = AsyncAnthropic(
                api_key=_key_from_env(self.config, self.key_env, True),
                base_url=self.config.base_url or None,  # None: SDK default, honouring ANTHROPIC_BASE_URL
                timeout=self.config.request_timeout,
                max_retries=self.config.max_retries,
            )
        return self._client

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        # The Messages SDK no longer takes sampling arguments by name; values that differ from the
        # API's defaults (temperature 1, no top_p) go in the body. Set evolver.top_p: null for models
        # that reject top_p.
        body: dict[str, Any] = {}
        if sampling.temperature != 1.0:
            body["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            body["top_p"] = sampling.top_p
        response = await self.client().messages.create(
            model=self.config.model,
            max_tokens=sampling.max_tokens,
            messages=[{"role": "user", "content": prompt}],
            **({"extra_body": body} if body else {}),
        )
        text = "".join(getattr(block, "text", "") for block in response.content if block.type == "text")
        return Completion(
            text=text,
            finish_reason="length" if response.stop_reason == "max_tokens" else "stop",
            prompt_tokens=response.usage.input_tokens,
            completion_tokens=response.usage.output_tokens,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


@hookimpl
def register_backends(register):
    register(OpenAIBackend)
    register(OpenAICompatibleBackend)
    register(AnthropicBackend)
