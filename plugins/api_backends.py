"""Built-in API backends: OpenAI (Chat Completions), Anthropic (Messages), and any OpenAI-compatible
server by base URL (vLLM, TGI, Ollama, llama.cpp).

The real SDK clients are used, with their own retries switched off: core `dispatch` retries 429
(honouring retry-after), 5xx, timeouts and malformed bodies with jittered exponential backoff, so
every attempt passes the RPM/TPM limiter and is counted. Both providers' batch APIs are
supported (`evolver.mode: batch`). Keys come from the environment only and are never logged,
cached or written to params.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any

from evolinstruct.api import (
    Backend,
    BatchStatus,
    Completion,
    EvolverConfig,
    Fatal,
    MalformedResponse,
    MissingSecretError,
    Retry,
    Sampling,
    Servers,
    hookimpl,
)

DEMO_HINT = "or run the offline demo, which needs no key: make demo"
#: HTTP statuses worth retrying: timeout, conflict, rate limit, and every server error (529 = overloaded).
RETRY_STATUSES = {408, 409, 429}


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


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if present."""
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            from datetime import datetime, timezone

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def messages(prompt: str, sampling: Sampling) -> list[dict[str, str]]:
    """Chat messages: the optional `evolver.system_message`, then the prompt as the user's turn."""
    system = getattr(sampling, "system", "")
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def _field(obj: Any, key: str) -> Any:
    """`key` of an SDK response object or of the same response as a dict (batch result lines)."""
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


class SDKBackend(Backend):
    """What the OpenAI and Anthropic backends share: a lazily built async SDK client (the import
    is heavy), key checks, and error classification over the SDKs' common exception names."""

    key_env: str = ""
    key_required: bool = True

    def __init__(self, config: EvolverConfig) -> None:
        super().__init__(config)
        #: SDK clients by server address ("" = the SDK's default address).
        self._clients: dict[str, list[Any]] = {}
        self._next = 0
        #: `evolver.base_url` may list several servers: each request goes to the least busy one.
        self.servers = Servers(config.base_urls() or [""])

    def check_ready(self) -> None:
        _key_from_env(self.config, self.key_env, self.key_required)

    #: The SDK's module name, imported on first use (the import is heavy; `evol --help` stays fast).
    sdk_module: str = ""

    def sdk(self) -> ModuleType:
        return importlib.import_module(self.sdk_module)

    def make_client(self, api_key: str | None, base_url: str = "") -> Any:
        raise NotImplementedError

    #: Requests in flight per SDK client. httpx's connection pool does work proportional to its
    #: open connections for every request, so at high concurrency several smaller pools
    #: (clients, used in turn) cost the event loop much less CPU than one big one.
    connections_per_client = 16

    def client(self, server: str | None = None) -> Any:
        """An SDK client for `server` (default: the first listed), clients of a server used in turn."""
        if not self._clients:
            key = _key_from_env(self.config, self.key_env, self.key_required)
            per_server = -(-self.control().concurrency // len(self.servers))
            count = max(1, -(-per_server // self.connections_per_client))
            self._clients = {s.url: [self.make_client(key, s.url) for _ in range(count)] for s in self.servers.servers}
        clients = self._clients[self.servers.servers[0].url if server is None else server]
        self._next += 1
        return clients[self._next % len(clients)]

    async def on_server(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """`call(client)` on the least busy server, keeping the servers' health up to date."""
        server = self.servers.pick()
        try:
            result = await call(self.client(server.url))
        except BaseException as exc:
            sdk = self.sdk()
            refused = isinstance(exc, sdk.APIConnectionError) and not isinstance(exc, sdk.APITimeoutError)
            counts = isinstance(exc, sdk.APITimeoutError) or (isinstance(exc, sdk.APIStatusError)
                                                              and exc.status_code >= 500)
            self.servers.failed(server, refused=refused, counts=counts)
            raise
        self.servers.answered(server)
        return result

    def client_options(self, base_url: str = "") -> dict[str, Any]:
        return {
            "base_url": base_url or None,  # None: the SDK default, honouring *_BASE_URL
            "timeout": self.config.request_timeout,
            "max_retries": 0,  # core dispatch retries, through the rate limiter
        }

    def key_env_name(self) -> str:
        return self.config.api_key_env or self.key_env

    def base_url(self) -> str:
        if len(self.servers) > 1:
            return ", ".join(s.url for s in self.servers.servers)
        return str(next(iter(self._clients.values()))[0].base_url) if self._clients else self.servers.servers[0].url

    def fatal(self, error: BaseException) -> Fatal | None:
        """401/403/404 and a 400/422 (the request's shape) from the SDK's status error classes, and
        connection errors (refused, DNS), described in one line that names the key variable only."""
        sdk = self.sdk()
        where = self.base_url() or "the SDK's default base URL"
        key_env = self.key_env_name()
        if isinstance(error, sdk.APIStatusError):
            kinds = {sdk.AuthenticationError: "auth", sdk.PermissionDeniedError: "auth",
                     sdk.NotFoundError: "not_found", sdk.BadRequestError: "bad_request",
                     sdk.UnprocessableEntityError: "bad_request"}
            kind = next((k for cls, k in kinds.items() if isinstance(error, cls)), None)
            if kind is None:
                return None
            hint = {"auth": f"check the key in {key_env} (and that it belongs to this provider)",
                    "not_found": f"check evolver.model '{self.config.model}' and evolver.base_url",
                    "bad_request": "check evolver's sampling params against what the server accepts"}[kind]
            message = f"{error.status_code} from {where}: {self._provider_message(error)} " \
                      f"(model '{self.config.model}', key from {key_env}; {hint})"
            return Fatal(kind, message)
        if isinstance(error, sdk.APIConnectionError) and not isinstance(error, sdk.APITimeoutError):
            if len(self.servers) > 1 and not self.servers.all_aside():  # another server can take the retry
                return None
            detail = f"{error}: {error.__cause__}" if error.__cause__ else str(error)
            return Fatal("unreachable", f"cannot reach {where}: {detail} (check evolver.base_url and the network)")
        return None

    def _provider_message(self, error: Any) -> str:
        """The provider's own error message (from the JSON body), one line, with the key redacted."""
        body = getattr(error, "body", None)
        message = None
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = inner.get("message") if isinstance(inner, dict) else None
        text = " ".join(str(message or getattr(error, "message", "") or error).split())
        key = os.environ.get(self.key_env_name())
        return text.replace(key, "***") if key else text

    def classify(self, error: BaseException) -> Retry | None:
        sdk = self.sdk()
        if isinstance(error, sdk.APIStatusError):
            status = error.status_code
            if status in RETRY_STATUSES or status >= 500:
                return Retry(retry_after_seconds(error.response.headers))
            return None
        if isinstance(error, sdk.APIConnectionError | sdk.APIResponseValidationError | json.JSONDecodeError):
            return Retry()  # timeouts are APIConnectionError subclasses
        return super().classify(error)

    def provider_failure(self, error: BaseException) -> bool:
        return isinstance(error, self.sdk().APIError) or super().provider_failure(error)

    async def aclose(self) -> None:
        for clients in self._clients.values():
            for client in clients:
                await client.close()
        self._clients = {}


class OpenAIBackend(SDKBackend):
    name = "openai"
    key_env = "OPENAI_API_KEY"
    supports_batch = True
    sdk_module = "openai"

    def make_client(self, api_key: str | None, base_url: str = "") -> Any:
        return self.sdk().AsyncOpenAI(api_key=api_key or "unused", **self.client_options(base_url))

    def body(self, prompt: str, sampling: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages(prompt, sampling),
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.top_p is not None:
            body["top_p"] = sampling.top_p
        if sampling.frequency_penalty:
            body["frequency_penalty"] = sampling.frequency_penalty
        return body

    @staticmethod
    def parse(response: Any) -> Completion:
        """A Completion from a Chat Completions response (an SDK object or a batch line's dict)."""
        get = _field
        choices = get(response, "choices")
        if not choices:
            raise MalformedResponse("the response has no choices")
        choice = choices[0]
        message = get(choice, "message")
        content = get(message, "content") if message is not None else None
        if not isinstance(content, str):
            raise MalformedResponse("the response's message has no text content")
        usage = get(response, "usage")
        return Completion(
            text=content,
            finish_reason=get(choice, "finish_reason") or "stop",
            prompt_tokens=(get(usage, "prompt_tokens") or 0) if usage else 0,
            completion_tokens=(get(usage, "completion_tokens") or 0) if usage else 0,
        )

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        # The SDK client's documented raw `post`, not `chat.completions.create`: the same request,
        # auth, headers and errors, without re-validating a body we built ourselves or building
        # pydantic models we would discard. That halves the client's CPU per request, which is
        # what limits throughput at high concurrency.
        body = self.body(prompt, sampling)
        response = await self.on_server(lambda client: client.post("/chat/completions", cast_to=object, body=body))
        if not isinstance(response, dict):
            raise MalformedResponse(f"expected a JSON object, got {type(response).__name__}")
        return self.parse(response)

    async def submit_batch(self, requests: Sequence[tuple[str, str]], sampling: Sampling) -> str:
        lines = (
            json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                        "body": self.body(prompt, sampling)}, ensure_ascii=False)
            for cid, prompt in requests
        )
        data = ("\n".join(lines) + "\n").encode("utf-8")
        upload = await self.client().files.create(file=("evolinstruct-batch.jsonl", data), purpose="batch")
        batch = await self.client().batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h",
            metadata={"created_by": "evolinstruct"},
        )
        return batch.id

    async def poll_batch(self, batch_id: str) -> BatchStatus:
        batch = await self.client().batches.retrieve(batch_id)
        counts = batch.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        ended = batch.status in ("completed", "expired", "cancelled", "failed")
        return BatchStatus(ended, done, counts.total if counts else 0, batch.status)

    async def batch_results(self, batch_id: str) -> dict[str, Completion]:
        batch = await self.client().batches.retrieve(batch_id)
        if not batch.output_file_id:  # failed, or expired before anything finished
            return {}
        content = await self.client().files.content(batch.output_file_id)
        results: dict[str, Completion] = {}
        for line in content.text.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            response = item.get("response") or {}
            if item.get("error") or response.get("status_code") != 200:
                continue  # left for the per-request fallback
            try:
                results[item["custom_id"]] = self.parse(response.get("body") or {})
            except MalformedResponse:
                continue
        return results


class OpenAICompatibleBackend(OpenAIBackend):
    """A self-hosted OpenAI-compatible server: `evolver.base_url` is required, a key is optional.
    Batch mode is not offered: self-hosted servers rarely implement the Batch API."""

    name = "openai_compatible"
    key_required = False
    supports_batch = False
    #: A self-hosted server charges compute, not money: stragglers are hedged by default.
    default_hedge_after = 3.0

    def check_ready(self) -> None:
        if not (self.config.base_urls() or os.environ.get("OPENAI_BASE_URL")):
            raise MissingSecretError(
                "evolver.backend 'openai_compatible' needs the server's address",
                "set evolver.base_url (for example http://localhost:8000/v1 for vLLM) or OPENAI_BASE_URL",
            )


class AnthropicBackend(SDKBackend):
    name = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    supports_batch = True
    sdk_module = "anthropic"

    def make_client(self, api_key: str | None, base_url: str = "") -> Any:
        return self.sdk().AsyncAnthropic(api_key=api_key, **self.client_options(base_url))

    def params(self, prompt: str, sampling: Sampling) -> dict[str, Any]:
        # temperature 1 and no top_p are the API's defaults; set evolver.top_p: null for models
        # that reject top_p.
        params: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": sampling.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        if getattr(sampling, "system", ""):
            params["system"] = sampling.system
        if sampling.temperature != 1.0:
            params["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            params["top_p"] = sampling.top_p
        return params

    @staticmethod
    def parse(message: Any) -> Completion:
        """A Completion from a Messages response (an SDK object or a batch result's dict)."""
        get = _field
        content = get(message, "content")
        usage = get(message, "usage")
        if content is None or usage is None:
            raise MalformedResponse("the message has no content or no usage")
        text = "".join(get(block, "text") or "" for block in content if get(block, "type") == "text")
        return Completion(
            text=text,
            finish_reason="length" if get(message, "stop_reason") == "max_tokens" else "stop",
            prompt_tokens=get(usage, "input_tokens") or 0,
            completion_tokens=get(usage, "output_tokens") or 0,
        )

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        params = self.params(prompt, sampling)
        # The Messages SDK takes sampling arguments other than max_tokens through the body.
        body = {k: params.pop(k) for k in ("temperature", "top_p") if k in params}
        response = await self.on_server(
            lambda client: client.messages.create(**params, **({"extra_body": body} if body else {})))
        return self.parse(response)

    async def submit_batch(self, requests: Sequence[tuple[str, str]], sampling: Sampling) -> str:
        batch = await self.client().messages.batches.create(
            requests=[{"custom_id": cid, "params": self.params(prompt, sampling)} for cid, prompt in requests]
        )
        return batch.id

    async def poll_batch(self, batch_id: str) -> BatchStatus:
        batch = await self.client().messages.batches.retrieve(batch_id)
        c = batch.request_counts
        total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
        return BatchStatus(batch.processing_status == "ended", total - c.processing, total, batch.processing_status)

    async def batch_results(self, batch_id: str) -> dict[str, Completion]:
        results: dict[str, Completion] = {}
        async for item in await self.client().messages.batches.results(batch_id):
            if item.result.type == "succeeded":
                try:
                    results[item.custom_id] = self.parse(item.result.message)
                except MalformedResponse:
                    continue
        return results


@hookimpl
def register_backends(register):
    register(OpenAIBackend)
    register(OpenAICompatibleBackend)
    register(AnthropicBackend)
