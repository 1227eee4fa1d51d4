"""One screen of results: docs/experiments.md's `dvc exp show` filter and `evol experiments` fit 100
columns with HumanEval and MBPP, through real DVC experiments whose metrics files have the
pipeline's names (a one-step stage writes them, so no model is needed), and a price change
reruns nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, committed

from evolinstruct.cli.experiments import render, rows_from
from evolinstruct.demo.project import dvc_env

WRITE = textwrap.dedent("""
    import json, os, yaml
    params = yaml.safe_load(open("params.yaml"))
    r = params["rounds"]
    os.makedirs("metrics", exist_ok=True)
    json.dump({"output_records": 20000 * r, "output_requests": 60000 * r, "output_tokens": 3_000_000 * r,
               "output_cost_usd": round(2.3456 * r, 6)}, open("metrics/evolve.json", "w"))
    json.dump({"humaneval": {"pass@1": 0.5 + r / 100, "problems": 164, "protocol": "greedy"},
               "mbpp": {"pass@1": 0.41 + r / 100, "problems": 500, "protocol": "greedy"}},
              open("metrics/evaluate.json", "w"))
""")


def sh(cwd: Path, command: str) -> str:
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env={**dvc_env(), "COLUMNS": "1000"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def width(table: str) -> int:
    return max(len(line.rstrip()) for line in table.splitlines())


@pytest.mark.slow
def test_the_documented_filter_and_evol_experiments_fit_100_columns(tmp_path):
    (tmp_path / "params.yaml").write_text(committed("params.yaml"))
    (tmp_path / "write.py").write_text(WRITE)
    (tmp_path / "dvc.yaml").write_text(textwrap.dedent("""
        stages:
          pipeline:
            cmd: python write.py
            deps: [write.py]
            params: [rounds, evolve]
            metrics: [metrics/evolve.json, metrics/evaluate.json]
    """))
    for command in ("git init -q", "git config user.email t@example.invalid", "git config user.name t",
                    "dvc init -q", "dvc repro -q", "git add -A", "git commit -q -m baseline",
                    "dvc exp run -q --queue -S rounds=0,1,4", "dvc exp run -q --queue -S evolve.family=general",
                    "dvc queue start -q"):
        sh(tmp_path, command)
    for _ in range(120):
        if not re.search(r"Queued|Running", sh(tmp_path, "dvc queue status")):
            break
        time.sleep(2)
    docs = (REPO / "docs/experiments.md").read_text(encoding="utf-8")
    documented = next(line for line in docs.splitlines() if line.startswith("dvc exp show --drop"))
    table = sh(tmp_path, f"{documented} --no-pager")
    compact = sh(tmp_path, f"{sys.executable} -m evolinstruct.cli.main experiments")
    unfiltered = sh(tmp_path, "dvc exp show --no-pager")
    print(f"\nwidths: unfiltered {width(unfiltered)}, documented filter {width(table)}, evol experiments "
          f"{width(compact)}\n{table}\n{compact}")
    assert width(table) <= 100 and width(compact) <= 100 < width(unfiltered)
    for header in ("rounds", "humaneval.pass@1", "mbpp.pass@1", "output_cost_usd"):
        assert header in table
    rows = [line.split() for line in compact.splitlines()]
    assert rows[0] == ["experiment", "rounds", "family", "humaneval", "mbpp", "cost", "$", "requests"]
    assert sum(row[-6:-3] == ["4", "code", "0.540"] for row in rows) == 1
    assert sum(row[-6:-3] == ["3", "general", "0.530"] for row in rows) == 1
    # A new price is no experiment: it is not in params.yaml, and nothing reruns for it.
    (tmp_path / "prices.yaml").write_text((REPO / "prices.yaml").read_text().replace("0.5, output: 1.5", "9, output: 9"))
    assert "prices" not in (tmp_path / "params.yaml").read_text()
    assert "up to date" in sh(tmp_path, "dvc status")


def test_the_compact_table_from_exp_show_rows():
    rows = rows_from([
        {"Experiment": None, "rev": "workspace", "typ": "baseline", "rounds": 3.0, "evolve.family": "code",
         "output_cost_usd": 1.5, "output_requests": 1800.0, "humaneval.pass@1": 0.25, "mbpp.pass@1": 0.125},
        {"Experiment": "ritzy-dogs", "rev": "1a2b3c4d5e", "typ": "branch_commit", "rounds": 4.0,
         "evolve.family": "code", "output_cost_usd": 2.0, "output_requests": 2400.0, "humaneval.pass@1": 0.3},
        {"Experiment": "queued-one", "rev": "9f9f9f9", "typ": "branch_commit", "State": "Queued", "rounds": 5.0},
        {"Experiment": "broken", "rev": "8e8e8e8", "typ": "branch_commit", "rounds": "!", "output_cost_usd": "!"},
    ])
    assert [(r.name, r.rounds, r.scores) for r in rows] == [
        ("workspace", 3, {"humaneval": 0.25, "mbpp": 0.125}), ("  ritzy-dogs [1a2b3c4]", 4, {"humaneval": 0.3}),
        ("  broken [8e8e8e8]", None, {})]
    lines = render(rows).splitlines()
    assert lines[0].split() == ["experiment", "rounds", "family", "humaneval", "mbpp", "cost", "$", "requests"]
    assert lines[2].split() == ["workspace", "3", "code", "0.250", "0.125", "1.5000", "1,800"]
    assert lines[3].split() == ["ritzy-dogs", "[1a2b3c4]", "4", "code", "0.300", "-", "2.0000", "2,400"]
    assert lines[4].split() == ["broken", "[8e8e8e8]", "-", "-", "-", "-", "-", "-"]
