"""`evolver.mode: batch` through the real SDKs' batch clients: OpenAI Batch (file upload, batch,
output file) and Anthropic Message Batches, including expiry and resume after a restart."""

import asyncio

import pytest
from evolinstruct.plugins.api_backends import AnthropicBackend, OpenAIBackend
from loopback import FakeLLMServer

from evolinstruct.llm.backends import Completion, EvolverConfig, Sampling
from evolinstruct.llm.cost import Price
from evolinstruct.evolve.rounds import RequestRunner, RoundStats
from evolinstruct.llm.request_cache import RequestCache

SAMPLING = Sampling(temperature=1.0, top_p=0.9, max_tokens=64)
PRICE = Price(input=1_000_000.0, output=0.0)  # $1 per prompt token, to check the discount
BACKENDS = [(OpenAIBackend, "/v1"), (AnthropicBackend, "")]


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def runner_for(backend_class, server, path, cache_path, **overrides):
    config = EvolverConfig(model="m", base_url=server.url + path, mode="batch", batch_poll_seconds=0.01,
                           retry_base_delay=0.01, **overrides)
    return RequestRunner(backend_class(config), RequestCache(cache_path), SAMPLING, price=PRICE)


def run(runner, prompts, timeout=None):
    stats = RoundStats(round=1)

    async def go():
        try:
            return await asyncio.wait_for(runner.run("batch", prompts, 1, stats), timeout)
        finally:
            await runner.backend.aclose()
            runner.cache.close()

    return asyncio.run(go()), stats


@pytest.mark.parametrize("backend_class,path", BACKENDS)
def test_batch_mode_answers_everything_through_one_batch_at_the_discount(tmp_path, backend_class, path):
    prompts = [f"Evolve task {i}" for i in range(7)]
    with FakeLLMServer(batch_polls=3) as server:
        runner = runner_for(backend_class, server, path, tmp_path / "c.sqlite", batch_max_requests=5)
        out, stats = run(runner, prompts)
    assert [o.text for o in out] == [f"echo: {p}" for p in prompts]
    assert len(server.batches) == 2 and server.requests == []  # 5 + 2, no online request
    assert stats.batch_requests == 7 and server.duplicates() == 0
    per_request = 11 if backend_class is OpenAIBackend else 13  # prompt tokens the fake reports
    assert stats.cost_usd == pytest.approx(7 * per_request * 0.5)


@pytest.mark.parametrize("backend_class,path", BACKENDS)
def test_an_expired_batch_keeps_its_partial_results_and_leftovers_go_one_by_one(tmp_path, backend_class, path):
    prompts = [f"Evolve task {i}" for i in range(5)]
    with FakeLLMServer(batch_answer_limit=3) as server:
        out, stats = run(runner_for(backend_class, server, path, tmp_path / "c.sqlite"), prompts)
    assert all(isinstance(o, Completion) for o in out)
    assert stats.batch_requests == 3 and len(server.requests) == 2  # the 2 expired ones, online
    assert server.duplicates() == 0 and len(server.answered) == 5


@pytest.mark.parametrize("backend_class,path", BACKENDS)
def test_a_restarted_run_polls_the_batch_it_submitted_instead_of_paying_again(tmp_path, backend_class, path):
    prompts = [f"Evolve task {i}" for i in range(4)]
    with FakeLLMServer(batch_polls=10**6) as server:  # never finishes during the first run
        with pytest.raises(TimeoutError):
            run(runner_for(backend_class, server, path, tmp_path / "c.sqlite"), prompts, timeout=0.5)
        assert len(server.batches) == 1
        server.batch_polls = 0  # the provider finishes it while we are away
        out, stats = run(runner_for(backend_class, server, path, tmp_path / "c.sqlite"), prompts)
    assert len(server.batches) == 1 and server.requests == []
    assert [o.text for o in out] == [f"echo: {p}" for p in prompts] and stats.batch_requests == 4
    cache = RequestCache(tmp_path / "c.sqlite")
    assert cache.open_batches(backend_class.name, "m") == {}  # collected, closed
    cache.close()
