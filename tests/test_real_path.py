"""The path a real user takes, walked from a real `git clone` of this repository's HEAD.

Nothing is edited but what a user edits: a seed file dropped into `data/raw/`, and `dvc exp run
-S ...` overrides on the command line. The evolver is the project's loopback server speaking the
OpenAI wire format (driven by the real SDK through the `openai_compatible` backend), the seed data
is the real Code Alpaca sample with its dirty rows, and the base model is a tiny local one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, SHARED
from loopback import FakeLLMServer, evolver_reply

from evolinstruct.demo.project import dvc_env

pytestmark = pytest.mark.slow
CODE_ALPACA = SHARED / "data/code_alpaca_2k.json"


def sh(cwd: Path, *cmd: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env or dvc_env(), capture_output=True, text=True, timeout=1200)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def fresh_clone(tmp_path: Path) -> Path:
    """A clone of HEAD, as `git clone` gives it to a new user: nothing untracked comes along."""
    clone = tmp_path / "evolinstruct"
    sh(tmp_path, "git", "clone", "-q", str(REPO), str(clone))
    sh(clone, "git", "config", "user.email", "user@example.invalid")
    sh(clone, "git", "config", "user.name", "A new user")
    return clone


def test_a_fresh_clone_is_a_dvc_project(tmp_path):
    clone = fresh_clone(tmp_path)
    assert (clone / ".dvc/config").exists() and not (clone / ".dvc/cache").exists()
    status = sh(clone, "dvc", "status")
    assert "not inside of a DVC repository" not in status.stdout + status.stderr
    # Every stage output is ignored by git before any run, whatever a failed run leaves behind.
    for out in ("data/seed/seed.jsonl", "data/evolved/round_1.jsonl", "data/eliminated/kept.jsonl",
                "data/merged/train.jsonl", "models/sft/config.json", "metrics/evolve.json", "dvc_plots/index.html"):
        assert sh(clone, "git", "check-ignore", "-q", out, check=False).returncode == 0, out
    for source in ("data/raw/code_alpaca.json", "params.yaml", "dvc.yaml"):
        assert sh(clone, "git", "check-ignore", "-q", source, check=False).returncode == 1, source


@pytest.mark.skipif(not CODE_ALPACA.exists(), reason="no shared Code Alpaca sample")
def test_real_seed_data_through_an_openai_compatible_server_then_sft_and_evaluate(tmp_path, tiny_model, own_request_cache):
    clone = fresh_clone(tmp_path)
    shutil.copy(CODE_ALPACA, clone / "data/raw/code_alpaca_2k.json")
    env = {**dvc_env(), "OPENAI_API_KEY": "sk-loopback", "HF_HUB_OFFLINE": "1"}
    with FakeLLMServer(reply=evolver_reply) as server:
        overrides = [
            "seed.source=data/raw/code_alpaca_2k.json",
            "rounds=1",
            "evolver.backend=openai_compatible", f"evolver.base_url={server.url}/v1", "evolver.model=loopback",
            "evolver.max_concurrency=32", "evolver.max_tokens=256",
            "eliminate.benchmarks=[humaneval]",
            f"sft.base_model={tiny_model}", "sft.max_steps=2", "sft.max_length=256", "sft.global_batch_size=8",
            "sft.warmup_steps=1", "sft.logging_steps=1", "sft.learning_rate=3e-5",
            "evaluate.benchmarks=[humaneval]", "evaluate.limit=2", "evaluate.max_new_tokens=16",
        ]
        args = [arg for pair in overrides for arg in ("-S", pair)]
        run = sh(clone, "dvc", "exp", "run", *args, env=env)
        answered = len(server.requests)
    log = run.stdout + run.stderr
    seed = json.loads((clone / "metrics/seed.json").read_text())
    rejects = [json.loads(line) for line in (clone / "data/seed/rejects.jsonl").read_text().splitlines()]
    # The sample's rows with an empty output are reported, not fatal: file, position, field, reason.
    empty = [r for r in rejects if r.get("field") == "output"]
    assert len(empty) >= 2 and all(r["source"].endswith("code_alpaca_2k.json") for r in empty), rejects[:3]
    assert "rejected" in log and seed["records_out"] > 1900
    assert answered > 0 and (clone / "data/merged/train.jsonl").exists()
    assert json.loads((clone / "metrics/evaluate.json").read_text())
    # The experiment left a clean workspace: nothing to rerun, nothing for git to add by mistake.
    # Only the lock step, which DVC runs every time (always_changed, docs/plugins.md), is pending.
    status = sh(clone, "dvc", "status", env=env)
    assert status.stdout.split() == ["plugins:", "always", "changed"], status.stdout
    again = sh(clone, "dvc", "repro", env=env)
    assert re.findall(r"Running stage '(\w+)'", again.stdout) == ["plugins"], again.stdout
    # What the README says to run next: the table and the plots, offline.
    table = sh(clone, "dvc", "exp", "show", env=env).stdout
    assert "humaneval.pass@1" in table and "records_out" in table
    sh(clone, "dvc", "plots", "show", env=env)
    page = (clone / "dvc_plots/index.html").read_text()
    for image in ("cascade.png", "rejects.png", "sft_loss.png"):
        assert image in page, image
    porcelain = sh(clone, "git", "status", "--porcelain").stdout.splitlines()
    assert all(line[3:] in ("dvc.lock", "params.yaml", "plugins.lock.yaml", "data/raw/code_alpaca_2k.json") for line in porcelain), porcelain


def test_make_demo_prints_the_activate_line_first_when_the_environment_is_not_active(monkeypatch):
    """`make demo` puts .venv/bin on its own PATH only: the user's shell needs the activate line.
    (tests/test_doc_commands.py runs the printed lines in a shell.)"""
    from evolinstruct.demo.project import next_steps

    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    lines = [line.split("#", 1)[0].strip() for line in next_steps(Path("demo-project")).splitlines()]
    assert lines[0].startswith(". ") and lines[0].endswith("bin/activate")
    assert lines[1:3] == ["cd demo-project", "dvc metrics show"]
    monkeypatch.setenv("VIRTUAL_ENV", __import__("sys").prefix)
    assert not next_steps(Path("demo-project")).lstrip().startswith(". ")
