"""The evolve stage as DVC runs it (a subprocess), driven through the real OpenAI SDK against the
loopback server: resume after SIGKILL, extra rounds and extra seeds pay only for what is new,
and the budget cap stops the stage cleanly."""

import json
import signal
import sqlite3
import time

import yaml
from conftest import finish_stage, start_stage
from loopback import FakeLLMServer, evolver_reply

from evolinstruct.llm.backends import Sampling
from evolinstruct.core.records import seed_record, write_records
from evolinstruct.llm.request_cache import request_key

SEEDS = [f"Write a Python function that computes statistic number {i} of a list of integers." for i in range(24)]


def project(tmp_path, server, rounds, seeds=SEEDS, **evolver):
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = {
        "rounds": rounds,
        "evolver": {"backend": "openai_compatible", "model": "evolver-1", "base_url": server.url + "/v1",
                    "max_concurrency": 6, "max_tokens": 256, "retry_base_delay": 0.01,
                    "cache": ".evolinstruct/requests.sqlite", **evolver},
        "evolve": {"family": "code", "seed": 42},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_records(tmp_path / "data/seed/seed.jsonl", [seed_record(s, "def f(xs):\n    return sum(xs)") for s in seeds])
    return tmp_path


KEY = {"OPENAI_API_KEY": "sk-secret-value-123"}


def stage(path):
    return start_stage("evolve", path, **KEY)


def finish(path):
    return finish_stage("evolve", path, **KEY)


def cached_keys(path):
    with sqlite3.connect(path / ".evolinstruct/requests.sqlite") as conn:
        return {key for (key,) in conn.execute("SELECT key FROM answers")}


def keys_of(bodies, rounds):
    """Every request key a server-side request body could have (the sample index is the round)."""
    sampling = Sampling(1.0, 0.9, 256)
    return {request_key("openai_compatible", "evolver-1", sampling, b["messages"][0]["content"], k)
            for b in bodies for k in range(1, rounds + 1)}


def cached_answers(path):
    db = path / ".evolinstruct/requests.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=0.1) as conn:
            return conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.Error:
        return 0


def outputs(path, rounds):
    return {k: (path / f"data/evolved/round_{k}.jsonl").read_bytes() for k in range(1, rounds + 1)}


def test_sigkill_at_any_moment_then_rerun_pays_nothing_twice_and_gives_byte_identical_outputs(tmp_path):
    with FakeLLMServer(reply=evolver_reply, latency=0.01) as server:
        reference = project(tmp_path / "reference", server, rounds=2)
        code, err = finish(reference)
        assert code == 0, err
    total_requests = len(server.requests)

    with FakeLLMServer(reply=evolver_reply, latency=0.01) as server:
        killed = project(tmp_path / "killed", server, rounds=2)
        for threshold in (10, 70, 130, None):  # kill mid-evolve of round 1, mid-answers, in round 2; finish
            received = cached_keys(killed) if cached_answers(killed) else set()
            sent_before = len(server.requests)
            proc = stage(killed)
            if threshold is None:
                err = proc.communicate(timeout=300)[1]
                assert proc.returncode == 0, err
            else:
                while cached_answers(killed) < threshold and proc.poll() is None:
                    time.sleep(0.005)
                proc.send_signal(signal.SIGKILL)
                assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
            # What earlier runs had received is in the cache; none of it may be sent again.
            assert not received & keys_of(server.requests[sent_before:], 2), "an answered request was sent again"
        # Requests in flight at a kill may be sent again (their answers never arrived): at most one
        # per concurrency slot per kill.
        assert server.duplicates() <= 6 * 3
    assert len(server.answered) == total_requests
    assert outputs(killed, 2) == outputs(reference, 2)
    assert "sk-secret-value-123" not in (killed / ".evolinstruct/requests.sqlite").read_bytes().decode("latin-1")


def test_a_fourth_round_and_new_seeds_send_requests_only_for_what_is_new(tmp_path):
    with FakeLLMServer(reply=evolver_reply) as server:
        path = project(tmp_path, server, rounds=3)
        assert finish(path)[0] == 0
        three = outputs(path, 3)
        sent_for_three = len(server.requests)
        project(tmp_path, server, rounds=4)
        assert finish(path)[0] == 0
        metrics = json.loads((path / "metrics/evolve.json").read_text())
        sent_for_four = len(server.requests) - sent_for_three
        assert outputs(path, 3) == three
        assert [metrics["rounds"][str(k)]["requests_sent"] for k in (1, 2, 3)] == [0, 0, 0]
        assert sent_for_four == metrics["rounds"]["4"]["requests_sent"] > 0
        # Two more seeds, one round: only their evolve/answer/judge requests are sent.
        before = len(server.requests)
        project(tmp_path, server, rounds=1, seeds=SEEDS + ["Reverse a linked list in place.", "Parse a CSV line."])
        assert finish(path)[0] == 0
        new_prompts = [r["messages"][0]["content"] for r in server.requests[before:]]
        assert len(new_prompts) == 6 and all("linked list" in p or "CSV" in p for p in new_prompts)
    assert server.duplicates() == 0


def test_the_budget_cap_fails_the_stage_cleanly_with_answers_kept(tmp_path):
    with FakeLLMServer(reply=evolver_reply) as server:
        path = project(tmp_path, server, rounds=2, budget_usd=0.05, max_concurrency=1,
                       prices={"evolver-1": {"input": 100.0, "output": 100.0}})
        code, err = finish(path)
    assert code == 1 and "evolver.budget_usd 0.05 reached in round 1" in err
    assert "raise evolver.budget_usd and rerun" in err
    assert cached_answers(path) == len(server.requests) > 0
    assert not (path / "data/evolved/round_1.jsonl").exists()
