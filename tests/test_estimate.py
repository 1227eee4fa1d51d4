"""`evol estimate` and the progress display."""

import io
import json

import yaml
from click.testing import CliRunner

from evolinstruct.cli.main import cli
from evolinstruct.core.progress import Progress
from evolinstruct.core.records import seed_record, write_records


def project(tmp_path, **evolver):
    params = {"rounds": 2, "evolver": {"backend": "openai", "model": "gpt-x", "max_tokens": 100,
                                       "prices": {"gpt-x": {"input": 2.0, "output": 8.0}}, **evolver}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    seeds = [seed_record(f"Write a function number {i} that sorts a list.", "def f(x):\n    return sorted(x)")
             for i in range(10)]
    write_records(tmp_path / "data/seed/seed.jsonl", seeds)


def estimate(tmp_path, *args):
    result = CliRunner().invoke(cli, ["estimate", *args], catch_exceptions=False, env={"OPENAI_API_KEY": ""})
    return result


def test_estimate_counts_requests_per_round_and_prices_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project(tmp_path)
    result = estimate(tmp_path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # Per record and round: evolve, answer, and the equality judge.
    assert [r["requests"] for r in data["rounds"]] == [30, 30]
    first, second = data["rounds"]
    assert second["prompt_tokens"] > first["prompt_tokens"]  # instructions grow
    assert first["cost_usd"] == (first["prompt_tokens"] * 2.0 + first["completion_tokens"] * 8.0) / 1e6
    assert first["worst_completion_tokens"] == 30 * 100
    online = json.loads(estimate(tmp_path, "--json").output)
    project(tmp_path, mode="batch")
    halved = json.loads(estimate(tmp_path, "--json").output)
    assert halved["total"]["cost_usd"] == online["total"]["cost_usd"] / 2


def test_estimate_without_seed_data_or_price_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project(tmp_path)
    (tmp_path / "data/seed/seed.jsonl").unlink()
    result = estimate(tmp_path)
    assert result.exit_code == 1 and "data/seed/seed.jsonl: not found" in result.output
    assert "dvc repro seed" in result.output
    project(tmp_path, model="unknown-model")
    result = estimate(tmp_path)
    assert result.exit_code == 0 and "no price for model 'unknown-model'" in result.output and "?" in result.output


def test_progress_shows_counts_rate_eta_and_counters():
    stream = io.StringIO()
    progress = Progress("round 1 evolve", 200, stream=stream, every=0)
    progress.add("cache hits", 50)
    progress.done = 50
    progress.add("retries", 3)
    progress.advance(50)
    line = stream.getvalue().strip()
    assert line.startswith("round 1 evolve: 100/200 (50%)") and "/s ETA " in line
    assert "cache hits 50" in line and "retries 3" in line


def test_after_a_complete_run_every_request_is_cached_and_one_more_round_is_all_that_is_left_to_pay(tmp_path, monkeypatch):
    import asyncio

    from doubles import ScriptedBackend
    from evolinstruct.stages.evolve import EvolveParams, heuristics_for

    from evolinstruct.core.records import read_records
    from evolinstruct.evolve.rounds import Evolver, RequestRunner
    from evolinstruct.llm.backends import EvolverConfig, Sampling
    from evolinstruct.llm.request_cache import RequestCache
    from evolinstruct.registry import get_registry

    monkeypatch.chdir(tmp_path)
    project(tmp_path, backend="scripted", model="script-1", cache=str(tmp_path / "c.sqlite"),
            prices={"script-1": {"input": 2.0, "output": 8.0}})
    config = EvolverConfig(backend="scripted", model="script-1", max_tokens=100, cache=str(tmp_path / "c.sqlite"))
    params = EvolveParams()
    filters = [get_registry().pick("filter", name) for name in params.filters]
    cache = RequestCache(config.cache)
    backend = ScriptedBackend(config)
    runner = RequestRunner(backend, cache, Sampling.from_config(config))
    seeds = read_records(tmp_path / "data/seed/seed.jsonl")
    attempts, _, _ = asyncio.run(Evolver(runner, heuristics_for(params), {}, params.seed, filters).run(seeds, 1, 2))
    cache.close()
    sent = len(backend.prompts)
    assert sent == 2 * 10 * 3  # evolve, answer and judge per record and round: every evolution kept

    data = json.loads(estimate(tmp_path, "--json").output)
    assert [(r["requests"], r["cached"]) for r in data["rounds"]] == [(30, 30), (30, 30)]
    assert data["total"]["cost_usd"] == 0.0  # nothing left to pay

    params_file = tmp_path / "params.yaml"
    params_file.write_text(params_file.read_text().replace("rounds: 2", "rounds: 3"))
    data = json.loads(estimate(tmp_path, "--json").output)
    assert [(r["requests"], r["cached"]) for r in data["rounds"]] == [(30, 30), (30, 30), (30, 0)]
    assert data["rounds"][2]["cost_usd"] > 0 and data["rounds"][0]["cost_usd"] == 0.0


def test_cache_hits_do_not_inflate_the_rate():
    stream = io.StringIO()
    progress = Progress("generate", 1000, stream=stream, every=0)
    progress.skip(990)
    progress.advance(1)
    line = stream.getvalue().strip()
    rate = float(line.split(") ")[1].split("/s")[0])
    assert rate <= 1.0 and "cache hits 990" in line  # one item done for real, not 991 in no time


def test_the_evolve_progress_line_shows_a_hang_as_a_hang(tmp_path):
    """While a request hangs, plain lines keep coming at a steady interval, showing what is in
    flight and for how long, and the ETA is never 0 while work remains; cache hits are not sent."""
    import asyncio

    from doubles import ScriptedBackend
    from plugins_under_test import filters, heuristics

    from evolinstruct.core.progress import EvolveProgress
    from evolinstruct.evolve.rounds import Evolver, RequestRunner
    from evolinstruct.llm.backends import Sampling
    from evolinstruct.llm.request_cache import RequestCache

    class Hangs(ScriptedBackend):
        async def complete(self, prompt, sampling):
            if "number 3" in prompt:
                await asyncio.sleep(0.6)
            return await super().complete(prompt, sampling)

    stream = io.StringIO()
    progress = EvolveProgress(stream=stream, every=0.1)
    cache = RequestCache(tmp_path / "c.sqlite")
    seeds = [seed_record(f"Write function number {i}.", "x") for i in range(5)]
    code = [h for h in heuristics.builtin_heuristics() if h.family == "code"]
    runner = RequestRunner(Hangs(), cache, Sampling(1.0, 0.9, 64), progress=progress)
    asyncio.run(Evolver(runner, code, {}, 42, [filters.EqualityJudge()]).run(seeds, 1, 1))
    cache.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4, lines  # steady lines during the hang, then the final one
    hung = [x for x in lines if "in flight 1 (oldest" in x]
    assert hung and all("ETA 0:00:00" not in x for x in lines)
    assert "r1 5/5" in lines[-1] and "sent 15" in lines[-1] and "done in" in lines[-1]
