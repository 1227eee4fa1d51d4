"""Sending requests: RPM/TPM limits, retries and timeouts through the real SDK clients, and the
budget cap."""

import asyncio

import pytest
from doubles import ScriptedBackend
from evolinstruct.plugins.api_backends import AnthropicBackend, OpenAIBackend, retry_after_seconds
from loopback import FakeLLMServer

from evolinstruct.llm.backends import Completion, EvolverConfig, Sampling
from evolinstruct.llm.cost import Budget, BudgetExhausted, Price
from evolinstruct.llm.dispatch import Control, RateLimiter, Retry, RetryPolicy
from evolinstruct.evolve.rounds import RequestRunner, RoundStats
from evolinstruct.llm.request_cache import RequestCache

SAMPLING = Sampling(temperature=1.0, top_p=0.9, max_tokens=64)
FAST = dict(retry_base_delay=0.01, retry_max_delay=0.05)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.now += seconds


def acquire_all(limiter, tokens):
    async def go():
        for n in tokens:
            await limiter.acquire(n)

    asyncio.run(go())


def test_rpm_limit_spaces_requests_after_a_ten_second_burst():
    clock = FakeClock()
    acquire_all(RateLimiter(rpm=60, clock=clock, sleep=clock.sleep), [1] * 30)
    # 60/min = 1/s with a 10-request burst: the other 20 take 20 s.
    assert clock.now == pytest.approx(20.0, abs=0.01)


def test_tpm_limit_counts_tokens_and_the_stricter_limit_wins():
    clock = FakeClock()
    acquire_all(RateLimiter(rpm=6000, tpm=6000, clock=clock, sleep=clock.sleep), [500] * 10)
    # 6000 tokens/min = 100/s, burst 1000 tokens: 2 requests at once, 4000 more tokens take 40 s.
    assert clock.now == pytest.approx(40.0, abs=0.01)
    clock2 = FakeClock()
    acquire_all(RateLimiter(clock=clock2, sleep=clock2.sleep), [10**6] * 100)
    assert clock2.now == 0  # no limits configured


def test_backoff_is_jittered_exponential_and_honours_a_longer_retry_after():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    delays = [policy.delay(n, Retry()) for n in range(6) for _ in range(50)]
    assert all(0 <= d <= 8.0 for d in delays) and len({round(d, 6) for d in delays}) > 200
    assert max(policy.delay(0, Retry()) for _ in range(50)) <= 1.0
    assert policy.delay(0, Retry(after=5.0)) >= 5.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def answer_all(backend, prompts, control=None):
    results = {}

    async def go():
        await backend.complete_many(prompts, SAMPLING, results.__setitem__, control)
        await backend.aclose()

    asyncio.run(go())
    return [results[i] for i in range(len(prompts))]


@pytest.mark.parametrize("backend_class,path", [(OpenAIBackend, "/v1"), (AnthropicBackend, "")])
def test_429_500_and_malformed_bodies_are_retried_until_every_request_is_answered_once(monkeypatch, backend_class, path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeLLMServer(error_rate=0.3, malformed_rate=0.1, seed=7) as server:
        config = EvolverConfig(model="m", base_url=server.url + path, max_retries=10, max_concurrency=8, **FAST)
        backend = backend_class(config)
        retries = []
        control = backend.control()
        control.on_retry = retries.append
        prompts = [f"task {i}" for i in range(40)]
        out = answer_all(backend, prompts, control)
    assert [o.text for o in out] == [f"echo: {p}" for p in prompts]
    assert server.faults.get("error", 0) > 0 and len(retries) == sum(server.faults.values())
    if backend_class is OpenAIBackend:
        assert server.faults.get("malformed", 0) > 0  # the Anthropic SDK may parse the broken body lazily
    assert server.duplicates() == 0 and len(server.answered) == 40


def test_a_hanging_request_times_out_and_is_retried(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeLLMServer(fail_first=0, hang_rate=0.3, hang_seconds=3, seed=1) as server:
        config = EvolverConfig(model="m", base_url=server.url + "/v1", request_timeout=0.3, max_retries=8,
                               max_concurrency=10, **FAST)
        out = answer_all(OpenAIBackend(config), [f"q{i}" for i in range(20)])
    assert all(isinstance(o, Completion) for o in out)
    assert server.faults["hang"] > 0 and server.duplicates() == 0


def test_a_bad_request_is_not_retried_and_fails_alone(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeLLMServer() as server:
        config = EvolverConfig(model="m", base_url=server.url + "/v1", max_retries=5, **FAST)
        bad, good = answer_all(OpenAIBackend(config), ["BAD REQUEST please", "fine"])
    assert "400" in str(bad) and good.text == "echo: fine"
    assert sum(1 for r in server.requests if r["messages"][0]["content"].startswith("BAD")) == 1


def test_exhausted_retries_name_the_attempts_and_the_last_error(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeLLMServer(fail_first=100) as server:
        config = EvolverConfig(model="m", base_url=server.url + "/v1", max_retries=2, **FAST)
        (out,) = answer_all(OpenAIBackend(config), ["hi"])
    assert isinstance(out, Exception) and "3 attempts failed" in str(out) and "429" in str(out)
    assert len(server.requests) == 3


def test_the_budget_cap_stops_before_it_is_exceeded_and_a_rerun_pays_only_for_the_rest(tmp_path):
    price = Price(input=1000.0, output=1000.0)  # $0.001 per token: easy arithmetic
    sampling = Sampling(1.0, 0.9, 30)
    prompts = [f"Write function number {i} please." for i in range(10)]  # ~9 tokens each

    def run(limit):
        backend = ScriptedBackend()
        cache = RequestCache(tmp_path / "c.sqlite")
        runner = RequestRunner(backend, cache, sampling, Control(concurrency=1, budget=Budget(limit, price)), price)
        stats = RoundStats(round=1)
        out = asyncio.run(runner.run("test", prompts, 1, stats))
        cache.close()
        return backend, stats, out

    backend, stats, out = run(limit=0.2)  # worst case per request ~0.039, actual 0.030
    answered = [o for o in out if isinstance(o, Completion)]
    assert 0 < len(answered) < 10 and stats.budget_refused == 10 - len(answered)
    assert stats.cost_usd <= 0.2 and stats.requests_sent == len(answered) == len(backend.prompts)
    assert "budget_usd" in out[-1].reason
    backend2, stats2, out2 = run(limit=100.0)
    assert len(backend2.prompts) == 10 - len(answered) and stats2.cache_hits == len(answered)
    assert all(isinstance(o, Completion) for o in out2)


def test_budget_reservations_are_released_when_a_request_fails():
    budget = Budget(1.0, Price(1000.0, 1000.0))
    r = budget.reserve(100, 400)
    assert budget.reserved == pytest.approx(0.5)
    with pytest.raises(BudgetExhausted):
        budget.reserve(100, 500)
    budget.release(r)
    assert budget.reserved == 0
    with pytest.raises(BudgetExhausted):  # once refused, the run stops cleanly: no trickling on
        budget.reserve(1, 1)
