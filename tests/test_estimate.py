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
