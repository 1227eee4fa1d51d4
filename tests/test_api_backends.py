"""The built-in API backends, through the real SDK clients, against a loopback server."""

import asyncio

import pytest
from evolinstruct.plugins.api_backends import AnthropicBackend, OpenAIBackend, OpenAICompatibleBackend
from loopback import FakeLLMServer

from evolinstruct.llm.backends import EvolverConfig, Sampling
from evolinstruct.core.errors import MissingSecretError

SAMPLING = Sampling(temperature=1.0, top_p=0.9, max_tokens=64)


def complete(backend, prompts):
    results = {}

    async def go():
        await backend.complete_many(prompts, SAMPLING, results.__setitem__)
        await backend.aclose()

    asyncio.run(go())
    return [results[i] for i in range(len(prompts))]


def test_openai_chat_completions_wire_format(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    with FakeLLMServer() as server:
        config = EvolverConfig(backend="openai", model="gpt-test", base_url=server.url + "/v1", max_retries=2)
        (out,) = complete(OpenAIBackend(config), ["Make it harder."])
    assert out.text == "echo: Make it harder." and out.prompt_tokens == 11 and out.completion_tokens == 7
    body = server.requests[-1]
    assert body["model"] == "gpt-test" and body["top_p"] == 0.9 and body["max_tokens"] == 64
    assert server.headers[-1]["authorization"] == "Bearer sk-test-secret"


def test_retry_after_429_is_honoured_by_the_sdk(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeLLMServer(fail_first=2) as server:
        config = EvolverConfig(backend="openai", model="m", base_url=server.url + "/v1", max_retries=3)
        (out,) = complete(OpenAIBackend(config), ["hi"])
    assert out.text == "echo: hi" and len(server.requests) == 3


def test_exhausted_retries_are_returned_not_raised(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeLLMServer(fail_first=10) as server:
        config = EvolverConfig(backend="openai", model="m", base_url=server.url + "/v1", max_retries=1)
        (out,) = complete(OpenAIBackend(config), ["hi"])
    assert isinstance(out, Exception) and "429" in str(out)


def test_anthropic_messages_wire_format(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeLLMServer() as server:
        config = EvolverConfig(backend="anthropic", model="claude-test", base_url=server.url, max_retries=0)
        (out,) = complete(AnthropicBackend(config), ["Make it harder."])
    assert out.text == "echo: Make it harder." and out.finish_reason == "length"
    assert (out.prompt_tokens, out.completion_tokens) == (13, 5)
    body = server.requests[-1]
    assert body["max_tokens"] == 64 and body["top_p"] == 0.9 and "temperature" not in body
    sent = server.headers[-1]  # older SDKs send x-api-key, newer ones a bearer token
    assert sent.get("x-api-key") == "sk-ant-test" or sent.get("authorization") == "Bearer sk-ant-test"


def test_openai_compatible_server_needs_an_address_not_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(MissingSecretError, match="base_url"):
        OpenAICompatibleBackend(EvolverConfig(backend="openai_compatible")).check_ready()
    with FakeLLMServer() as server:
        config = EvolverConfig(backend="openai_compatible", model="local", base_url=server.url + "/v1")
        backend = OpenAICompatibleBackend(config)
        backend.check_ready()
        (out,) = complete(backend, ["x"])
    assert out.text == "echo: x"


def test_missing_keys_fail_before_any_request(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingSecretError, match="OPENAI_API_KEY is not set"):
        OpenAIBackend(EvolverConfig()).check_ready()
    with pytest.raises(MissingSecretError, match="MY_KEY is not set"):
        OpenAIBackend(EvolverConfig(api_key_env="MY_KEY")).check_ready()
    with pytest.raises(MissingSecretError, match="ANTHROPIC_API_KEY"):
        AnthropicBackend(EvolverConfig(backend="anthropic")).check_ready()
