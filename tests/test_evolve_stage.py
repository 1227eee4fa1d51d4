"""The evolve stage as DVC runs it (a subprocess), driven through the real OpenAI SDK against the
loopback server: resume after SIGKILL, extra rounds and extra seeds pay only for what is new,
and the budget cap stops the stage cleanly."""

import json
import signal
import sqlite3
import time
from importlib import metadata

import yaml
from conftest import finish_stage, start_stage
from loopback import FakeLLMServer, evolver_reply

from evolinstruct.core.records import seed_record, write_records
from evolinstruct.llm.backends import Sampling
from evolinstruct.llm.request_cache import request_key

SEEDS = [f"Write a Python function that computes statistic number {i} of a list of integers." for i in range(24)]


def project(tmp_path, server, rounds, seeds=SEEDS, **evolver):
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = {
        "rounds": rounds,
        "evolver": {"backend": "openai_compatible", "model": "evolver-1", "base_url": server.url + "/v1",
                    "max_concurrency": 6, "max_tokens": 256, "retry_base_delay": 0.01, "hedge_after": 0,
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
    version = f"evolinstruct {metadata.version('evolinstruct')}"  # the backend plugin's distribution
    return {request_key("openai_compatible", "evolver-1", sampling, b["messages"][0]["content"], k, version)
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
        # The metrics describe the output and what it took, whoever paid: a rerun answered
        # entirely from the cache writes the same metrics; what it paid is in the report.
        paid = (path / "metrics/evolve.json").read_bytes()
        assert finish(path)[0] == 0 and len(server.requests) == sent_for_three
        assert (path / "metrics/evolve.json").read_bytes() == paid
        metrics = json.loads(paid)
        assert sorted(metrics) == ["output_cost_usd", "output_eliminated", "output_failed", "output_kept",
                                   "output_records", "output_requests", "output_tokens", "plugins"]
        assert metrics["output_requests"] == sent_for_three and metrics["output_records"] == 3 * len(SEEDS)
        report = json.loads((path / "reports/evolve.json").read_text())
        assert report["this_run"]["requests_sent"] == 0 and report["this_run"]["cache_hits"] == sent_for_three
        table = report["rounds_table"]
        assert [row["entered"] for row in table] == [len(SEEDS)] * 3
        assert all(row["evolved"] + row["returned_to_pool"] == row["entered"] for row in table)
        project(tmp_path, server, rounds=4)
        assert finish(path)[0] == 0
        report = json.loads((path / "reports/evolve.json").read_text())
        sent_for_four = len(server.requests) - sent_for_three
        assert outputs(path, 3) == three
        assert [report["rounds"][str(k)]["requests_sent"] for k in (1, 2, 3)] == [0, 0, 0]
        assert sent_for_four == report["rounds"]["4"]["requests_sent"] > 0
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


def timed(path, **env):
    started = time.monotonic()
    code, err = finish_stage("evolve", path, timeout=120, **{**KEY, **env})
    return code, err, time.monotonic() - started


def test_a_wrong_key_stops_the_stage_within_seconds_naming_the_status_and_the_key_variable(tmp_path):
    with FakeLLMServer(reply=evolver_reply, status=401) as server:
        path = project(tmp_path, server, rounds=3, max_retries=6, retry_base_delay=1.0, max_concurrency=8)
        code, err, seconds = timed(path)
    assert code == 1 and seconds < 15, err
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert "401" in line and "Incorrect API key" in line and "OPENAI_API_KEY" in line and server.url in line
    assert "sk-secret-value-123" not in err
    assert len(server.requests) <= 8  # no more than the first wave: nothing piles up, nothing is retried


def test_a_wrong_model_and_a_bad_request_shape_stop_the_stage(tmp_path):
    for status, words in ((404, "does not exist"), (400, "Unrecognized request argument")):
        with FakeLLMServer(reply=evolver_reply, status=status) as server:
            path = project(tmp_path / str(status), server, rounds=2, max_concurrency=2)
            code, err, seconds = timed(path)
        assert code == 1 and seconds < 15 and f"{status} from" in err and words in err, err
        assert len(server.requests) <= 4


def test_a_dead_base_url_stops_at_the_first_round_naming_the_address(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Dead:
        url = f"http://127.0.0.1:{port}"

    path = project(tmp_path, Dead, rounds=3, max_retries=2, retry_base_delay=0.05, max_concurrency=4)
    code, err, seconds = timed(path)
    assert code == 1 and seconds < 15, err
    assert f"cannot reach http://127.0.0.1:{port}" in err and "evolver.base_url" in err
    assert not list((path / "data/evolved").glob("round_*.jsonl"))


def test_a_refused_connection_is_named_within_5_seconds_with_the_default_retries(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Dead:
        url = f"http://127.0.0.1:{port}"

    # The defaults: 6 retries from 1 s, doubling (about 30 s of backoff before this was fixed).
    path = project(tmp_path / "dead", Dead, rounds=3, max_retries=6, retry_base_delay=1.0, max_concurrency=16)
    code, err, seconds = timed(path)
    assert code == 1 and f"cannot reach http://127.0.0.1:{port}" in err, err
    # Baseline in the same run: the same stage stopping at its first answer (a 401), i.e. the
    # start-up of a stage process and its SDK on this machine, which a loaded CI box stretches.
    with FakeLLMServer(reply=evolver_reply, status=401) as server:
        code, wrong_key, startup = timed(project(tmp_path / "baseline", server, rounds=3, max_concurrency=16))
    assert code == 1 and "401" in wrong_key
    print(f"refused connection named after {seconds:.2f} s; a stage stopping at its first answer: {startup:.2f} s")
    assert seconds - startup < 5, (seconds, startup, err)


def test_after_a_key_is_revoked_mid_run_the_rerun_pays_nothing_twice(tmp_path):
    with FakeLLMServer(reply=evolver_reply, status=401, status_after=30) as server:
        path = project(tmp_path, server, rounds=2)
        code, err, _ = timed(path)
        assert code == 1 and "401" in err
        answered_before = cached_answers(path)
        assert answered_before == 30
        server.status = 0  # the key is fixed
        code, err, _ = timed(path)
        assert code == 0, err
    assert server.duplicates() == 0


def test_the_failure_share_stops_the_run_as_results_arrive(tmp_path):
    seeds = SEEDS + [f"BAD REQUEST number {i}" for i in range(8)]  # the loopback answers these 400
    with FakeLLMServer(reply=evolver_reply) as server:
        path = project(tmp_path, server, rounds=3, seeds=seeds, max_failure_share=0.05, max_concurrency=2)
        code, err, _ = timed(path)
    assert code == 1 and "max_failure_share" in err and "stopped early" in err, err
    assert len(server.requests) < 3 * 3 * len(SEEDS)  # it did not run every round first
