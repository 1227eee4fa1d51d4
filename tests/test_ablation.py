"""The paper's rounds ablation, as docs/experiments.md tells users to run it: queued DVC
experiments over `rounds` (and the heuristic family), `dvc exp show` with pass@1 per experiment,
`dvc plots diff` drawing pass@1 against rounds, and the request cache paying for each round once."""

import csv
import io
import json
import subprocess
import time

import pytest
from conftest import REPO

from evolinstruct.demo.project import dvc_env, run_demo

pytestmark = pytest.mark.slow


def sh(project, *cmd):
    proc = subprocess.run(list(cmd), cwd=project, env=dvc_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, own_request_cache):
    project = tmp_path_factory.mktemp("ablation") / "demo"
    run_demo(project, REPO)  # the baseline: rounds=2, family code
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-q", "-m", "baseline")
    sh(project, "dvc", "exp", "run", "--queue", "-S", "rounds=0,1,3")
    sh(project, "dvc", "exp", "run", "--queue", "-S", "evolve.family=general")
    sh(project, "dvc", "queue", "start")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = sh(project, "dvc", "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert status.count("Success") == 4, status
    return project


def experiments(project):
    table = sh(project, "dvc", "exp", "show", "--csv", "--drop", ".*", "--keep",
               "Experiment|^rounds$|^evolve.family$|humaneval.pass@1|total.requests_sent|total.cache_hits")
    rows = [r for r in csv.DictReader(io.StringIO(table)) if r["Experiment"]]
    return {(int(r["rounds"]), r["evolve.family"]): r for r in rows}


def test_exp_show_has_pass_at_1_for_every_experiment(sweep):
    rows = experiments(sweep)
    assert set(rows) == {(0, "code"), (1, "code"), (3, "code"), (2, "general")}
    assert all(0.0 <= float(r["humaneval.pass@1"]) <= 1.0 for r in rows.values())


def test_the_request_cache_makes_the_sweep_pay_for_each_round_once(sweep):
    rows = experiments(sweep)
    assert int(rows[0, "code"]["total.requests_sent"]) == 0  # seed data only
    assert int(rows[1, "code"]["total.requests_sent"]) == 0  # round 1 was paid by the baseline
    three = rows[3, "code"]
    assert int(three["total.cache_hits"]) == 2 * 50 and int(three["total.requests_sent"]) == 50  # round 3 only
    assert int(rows[2, "general"]["total.requests_sent"]) > 0  # other prompts: paid


def test_plots_diff_draws_pass_at_1_against_rounds(sweep):
    names = sh(sweep, "dvc", "exp", "ls", "--names-only").split()
    data = json.loads(sh(sweep, "dvc", "plots", "diff", *names, "--json"))["data"]
    (plot,) = data["pass_at_1_by_rounds"]
    points = plot["content"]["data"]["values"]
    assert sorted((p["rounds"], p["family"]) for p in points) == [(0, "code"), (1, "code"), (2, "general"), (3, "code")]
    assert plot["content"]["encoding"]["x"]["field"] == "rounds"
    assert plot["content"]["encoding"]["y"]["field"] == "pass@1"
