"""Working as a team: the README's "Working as a team" commands, run as printed by two people.

Alice and Bob each have a clone of one git repository (a bare one stands in for the team's git
server), their own home folder and request cache, and share a local directory as the DVC remote.
The evolver is the loopback server, answering at random (as a model sampling at temperature 1
does), so a round bought twice would come out different. The request counts are taken at the
server: after `dvc pull`, Bob's `evol estimate` shows the pulled rounds as paid, his
`dvc exp run -S rounds=3` sends round 3's requests only and rebuilds rounds 1-2 byte for byte;
Alice, after pulling his experiment, pays round 4 only.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from loopback import FakeLLMServer, evolver_reply
from test_doc_commands import fenced_blocks

from evolinstruct.demo.project import dvc_env
from evolinstruct.llm.backends import Completion
from evolinstruct.llm.request_cache import RequestCache, prune_answers

GIT_URL = "https://git.example.com/team/evolinstruct.git"
REMOTE = "/mnt/team/evolinstruct-dvc"


def team_blocks() -> list[list[str]]:
    """The README's "Working as a team" shell blocks, comments stripped."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Working as a team", 1)[1].split("\n## ", 1)[0]
    return [[re.sub(r"\s+#.*$", "", line).strip() for line in lines if line.strip()]
            for language, lines in fenced_blocks(section) if language == "sh"]


def sampled_reply(prompt: str) -> str:
    """`evolver_reply` with a random tail on evolutions and answers: each purchase differs."""
    text = evolver_reply(prompt)
    return text if text == "Not Equal" else f"{text}  # {random.getrandbits(48):012x}"


def person(tmp_path: Path, name: str) -> dict[str, str]:
    """Someone on their own machine: own home folder (so their own empty request cache), git identity."""
    home = tmp_path / f"home-{name}"
    home.mkdir()
    env = {k: v for k, v in dvc_env().items() if k not in ("EVOLINSTRUCT_CACHE", "XDG_CACHE_HOME", "VIRTUAL_ENV")}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not p.startswith(str(REPO / ".venv")))
    who = {f"GIT_{role}_{field}": value for role in ("AUTHOR", "COMMITTER")
           for field, value in (("NAME", name), ("EMAIL", f"{name}@example.invalid"))}
    return {**env, **who, "HOME": str(home), "OPENAI_API_KEY": "sk-loopback", "HF_HUB_OFFLINE": "1"}


def run(cwd: Path, env: dict[str, str], commands: list[str], setup: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Run `commands` in one bash session (cd carries over); returns each command's output. The
    venv (bin on PATH) comes from this checkout; `setup` adds test-only lines after a command."""
    script = ["set -euo pipefail", f"export PATH={REPO / '.venv/bin'}:$PATH"]
    for i, command in enumerate(commands):
        script += [f"echo '<<<{i}>>>'", command, *(setup or {}).get(command, [])]
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1200)
    parts = re.split(r"^<<<(\d+)>>>$", proc.stdout, flags=re.MULTILINE)
    outputs = {commands[int(parts[i])]: parts[i + 1] for i in range(1, len(parts), 2)}
    assert proc.returncode == 0, f"failed at: {list(outputs)[-1] if outputs else 'start'}\n{proc.stderr[-4000:]}"
    return outputs


def rounds_sent(clone: Path) -> list[int]:
    report = json.loads((clone / "reports/evolve.json").read_text())["rounds"]
    return [report[k]["requests_sent"] for k in sorted(report, key=int)]


def round_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("round_*.jsonl"))}


@pytest.mark.slow
def test_the_readme_team_commands_share_paid_rounds_through_a_dvc_remote(tmp_path, tiny_model):
    local_remote, s3_remote, push, bob_block, alice_again = team_blocks()
    server_git, remote = tmp_path / "git-server/evolinstruct.git", tmp_path / "dvc-remote"
    alice_env, bob_env = person(tmp_path, "alice"), person(tmp_path, "bob")
    alice, bob = tmp_path / "alice/evolinstruct", tmp_path / "bob/evolinstruct"
    subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(server_git)], check=True)
    subprocess.run(["git", "clone", "-q", str(server_git), str(alice)], check=True)
    venv = [f"ln -s {REPO / '.venv'} .venv", "touch -d @0 pyproject.toml"]  # `make setup`: installed already

    with FakeLLMServer(reply=sampled_reply) as server:
        # Alice configures the project for the team's own data, evolver and base model, and runs it.
        shutil.copytree(tiny_model, alice / "models/base/tiny")
        shutil.copy(REPO / "evolinstruct/demo_data/seed.jsonl", alice / "data/raw/seed.jsonl")
        from dvc.utils.hydra import apply_overrides

        apply_overrides(alice / "params.yaml", [
            "rounds=2", "seed.source=data/raw/seed.jsonl",
            "evolver.backend=openai_compatible", f"evolver.base_url={server.url}/v1", "evolver.model=loopback",
            "evolver.max_concurrency=8", "evolver.max_tokens=256", "eliminate.benchmarks=[humaneval]",
            "sft.base_model=models/base/tiny", "sft.max_steps=2", "sft.max_length=256", "sft.global_batch_size=8",
            "sft.warmup_steps=1", "sft.logging_steps=1", "evaluate.benchmarks=[humaneval]", "evaluate.limit=2",
            "evaluate.max_new_tokens=16"])
        run(alice, alice_env, ["dvc add -q models/base/tiny", "git add -A", "git commit -q -m 'Our data and models'",
                               "dvc repro"])
        paid_by_alice = len(server.requests)
        pushed = {folder: round_files(alice / folder) for folder in ("data/evolved", "data/answers")}

        # The README, as printed: the remote, the S3 variant (in a scratch project), the push.
        run(alice, alice_env, [c.replace(REMOTE, str(remote)) for c in local_remote])
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        run(scratch, alice_env, ["git init -q", "dvc init -q", *s3_remote])
        assert "url = s3://your-bucket/evolinstruct" in (scratch / ".dvc/config").read_text()
        run(alice, alice_env, push)

        # Bob: clone, pull, estimate, one more round, share the experiment.
        before = len(server.requests)
        bob_commands = [c.replace(GIT_URL, str(server_git)) for c in bob_block]
        bob.parent.mkdir()
        out = run(bob.parent, bob_env, bob_commands, setup={bob_commands[0]: venv})
        paid_by_bob = len(server.requests) - before
        bob_rounds = rounds_sent(bob)

        # Alice builds on Bob's experiment.
        before = len(server.requests)
        run(alice, alice_env, alice_again)
        paid_by_alice_round_4 = len(server.requests) - before
        alice_rounds = rounds_sent(alice)

    estimate = {int(m[0]): (int(m[1]), int(m[2])) for m in re.findall(
        r"^\s*(\d+)\s+([\d,]+)\s+([\d,]+)\s", out["evol estimate"].replace(",", ""), re.MULTILINE)}
    print(f"\nalice paid {paid_by_alice} for rounds 1-2; bob's estimate (requests, cached) {estimate}; "
          f"bob paid {paid_by_bob} (per round {bob_rounds}); alice then paid {paid_by_alice_round_4} "
          f"(per round {alice_rounds})")
    assert estimate[1][0] == estimate[1][1] > 0 and estimate[2][0] == estimate[2][1] > 0, out["evol estimate"]
    assert paid_by_alice > 0
    assert bob_rounds[:2] == [0, 0] and paid_by_bob == bob_rounds[2] > 0
    assert alice_rounds[:3] == [0, 0, 0] and paid_by_alice_round_4 == alice_rounds[3] > 0
    # Bob's rounds 1-2 are Alice's bytes, data and answers alike; Alice's rounds 1-3 are Bob's.
    for folder in ("data/evolved", "data/answers"):
        bobs, alices = round_files(bob / folder), round_files(alice / folder)
        assert sorted(pushed[folder]) == ["round_1.jsonl", "round_2.jsonl"] and len(alices) == 4, folder
        assert {k: bobs[k] for k in pushed[folder]} == pushed[folder], folder
        assert {k: alices[k] for k in bobs} == bobs, folder
    # Answers hold prompts and texts, never a key.
    assert all(b"sk-loopback" not in data for data in round_files(bob / "data/answers").values())


def test_answer_files_hold_what_each_round_used_and_win_over_a_private_cache(tmp_path):
    """Round files list exactly the answers a round used (sent or cached), sorted by key, and a
    pulled file replaces what another person's cache holds under the same key: the shared data
    was built from the shared answers."""
    mine = RequestCache(tmp_path / "mine.sqlite")
    for key, round, text in (("b2", 2, "two"), ("a1", 1, "one"), ("c1", 1, "uno"), ("z9", 1, "unused")):
        mine.put(key, "openai", "m", Completion(text, "stop", 1, 2))  # answered in an earlier run
        mine.expect(key, round)
    mine.get("c1"), mine.get("a1"), mine.get("b2")  # this run used these three; z9 was never asked
    folder = tmp_path / "data/answers"
    (folder / "round_5.jsonl").parent.mkdir(parents=True)
    (folder / "round_5.jsonl").write_text("stale\n")
    prune_answers(folder, rounds=2)
    mine.export_round(folder, 1), mine.export_round(folder, 2)
    assert sorted(p.name for p in folder.iterdir()) == ["round_1.jsonl", "round_2.jsonl"]
    rows = [json.loads(line) for line in (folder / "round_1.jsonl").read_text().splitlines()]
    assert [(r["key"], r["text"]) for r in rows] == [("a1", "one"), ("c1", "uno")]

    theirs = RequestCache(tmp_path / "theirs.sqlite")
    theirs.put("a1", "openai", "m", Completion("their own sample", "stop", 1, 1))
    assert theirs.import_answers(folder) == 3
    assert theirs.get("a1").text == "one" and theirs.get("b2").text == "two" and theirs.get("z9") is None
