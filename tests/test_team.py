"""Working as a team: what one person paid for travels with the data through a DVC remote.

Two clones of one project share a local directory remote. The second starts with an empty
request cache and a fresh home folder: after `dvc pull`, `evol estimate` shows the pulled rounds
as paid, one more round pays only that round's requests (counted at the loopback server), and the
earlier rounds come out byte for byte as pushed, although the server answers at random (as a
model sampling at temperature 1 does), so re-bought rounds would differ.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from loopback import FakeLLMServer, evolver_reply

from evolinstruct.demo.project import dvc_env, scaffold

pytestmark = pytest.mark.slow


def sampled_reply(prompt: str) -> str:
    """`evolver_reply` with a random tail on evolutions and answers: the same prompt gets another
    text each time it is paid for."""
    text = evolver_reply(prompt)
    return text if text == "Not Equal" else f"{text}  # {random.getrandbits(48):012x}"


def sh(cwd: Path, *cmd: str, env: dict[str, str]) -> str:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def teammate_env(home: Path) -> dict[str, str]:
    """A person on another machine: own home folder, nothing cached, no EVOLINSTRUCT_CACHE."""
    env = {k: v for k, v in dvc_env().items() if k not in ("EVOLINSTRUCT_CACHE", "XDG_CACHE_HOME")}
    home.mkdir(parents=True, exist_ok=True)
    who = {f"GIT_{role}_{field}": value for role in ("AUTHOR", "COMMITTER")
           for field, value in (("NAME", home.name), ("EMAIL", f"{home.name}@example.invalid"))}
    return {**env, **who, "HOME": str(home), "OPENAI_API_KEY": "sk-loopback", "HF_HUB_OFFLINE": "1"}


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("round_*.jsonl"))}


def test_a_teammate_who_pulls_pays_only_for_the_new_round(tmp_path, source):
    alice_dir, bob_dir, remote = tmp_path / "alice", tmp_path / "bob", tmp_path / "remote"
    alice, bob = teammate_env(tmp_path / "home-alice"), teammate_env(tmp_path / "home-bob")
    with FakeLLMServer(reply=sampled_reply) as server:
        scaffold(alice_dir, source, [
            "rounds=2", "evolver.backend=openai_compatible", f"evolver.base_url={server.url}/v1",
            "evolver.model=loopback", "evolver.max_concurrency=8", "evolver.max_tokens=256"])
        # Alice runs the pipeline, shares it, and pushes the data.
        sh(alice_dir, "dvc", "repro", env=alice)
        paid_by_alice = len(server.requests)
        sh(alice_dir, "dvc", "remote", "add", "-d", "store", str(remote), env=alice)
        sh(alice_dir, "git", "add", "-A", env=alice)
        sh(alice_dir, "git", "commit", "-q", "-m", "two rounds", env=alice)
        sh(alice_dir, "dvc", "push", env=alice)

        # Bob clones and pulls: nothing in his cache, nothing to rerun.
        sh(tmp_path, "git", "clone", "-q", str(alice_dir), str(bob_dir), env=bob)
        sh(bob_dir, "dvc", "pull", env=bob)
        assert "up to date" in sh(bob_dir, "dvc", "status", env=bob)
        assert not (tmp_path / "home-bob/.cache/evolinstruct").exists()

        # What one more round costs him: the pulled rounds are paid, round 3 is all to pay.
        three = bob_dir / "three.yaml"
        three.write_text((bob_dir / "params.yaml").read_text().replace("rounds: 2", "rounds: 3"))
        cli = [sys.executable, "-m", "evolinstruct.cli.main"]
        estimate = json.loads(sh(bob_dir, *cli, "estimate", "--params", str(three), "--json", env=bob))
        by_round = {r["round"]: r for r in estimate["rounds"]}
        assert all(by_round[k]["cached"] == by_round[k]["requests"] > 0 for k in (1, 2)), by_round
        assert by_round[3]["cached"] == 0 and by_round[3]["requests"] > 0, by_round

        before = len(server.requests)
        log = sh(bob_dir, "dvc", "exp", "run", "-S", "rounds=3", env=bob)
        paid_by_bob = len(server.requests) - before

    report = json.loads((bob_dir / "reports/evolve.json").read_text())["rounds"]
    print(f"\nalice paid {paid_by_alice} requests for rounds 1-2; bob paid {paid_by_bob} for rounds 1-3 "
          f"(by round: {[report[str(k)]['requests_sent'] for k in (1, 2, 3)]}); estimate said round 3 needs "
          f"{by_round[3]['requests']}")
    assert [report[str(k)]["requests_sent"] for k in (1, 2)] == [0, 0], log
    # Round 3 only; the estimate's count is an upper bound (it sends every evolution to the judge).
    assert 0 < paid_by_bob == report["3"]["requests_sent"] <= by_round[3]["requests"]
    # Rounds 1 and 2 are the pushed bytes, data and answers alike.
    for folder in ("data/evolved", "data/answers"):
        pushed, rebuilt = files(alice_dir / folder), files(bob_dir / folder)
        assert set(rebuilt) == {"round_1.jsonl", "round_2.jsonl", "round_3.jsonl"}, folder
        assert {k: rebuilt[k] for k in pushed} == pushed, folder
    # Answers hold prompts and texts, never a key.
    assert all(b"sk-loopback" not in data for data in files(bob_dir / "data/answers").values())
    assert os.environ.get("EVOLINSTRUCT_CACHE") not in bob.values()
