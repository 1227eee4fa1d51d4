"""The paper's rounds ablation, as docs/experiments.md tells users to run it: queued DVC
experiments over `rounds` (and the heuristic family), `dvc exp show` with pass@1 per experiment,
`dvc plots diff` drawing pass@1 against rounds, and the request cache paying for each round once."""

import csv
import io
import json
import re
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
def sweep(tmp_path_factory, own_request_cache, source):
    project = tmp_path_factory.mktemp("ablation") / "demo"
    run_demo(project, source)  # the baseline: rounds=2, family code
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
               "Experiment|^rounds$|^evolve.family$|humaneval.pass@1|output_requests|output_cost_usd")
    rows = [r for r in csv.DictReader(io.StringIO(table)) if r["Experiment"]]
    return {(int(r["rounds"]), r["evolve.family"]): r for r in rows}


def test_exp_show_has_pass_at_1_for_every_experiment(sweep):
    rows = experiments(sweep)
    assert set(rows) == {(0, "code"), (1, "code"), (3, "code"), (2, "general")}
    assert all(0.0 <= float(r["humaneval.pass@1"]) <= 1.0 for r in rows.values())


def paid(project, name):
    """(requests sent, cache hits) of an experiment, from the evolve stage's log in `dvc queue logs`.
    The metrics describe the output (the same whoever paid for it); what a run paid is in its log
    and in reports/evolve.json."""
    log = sh(project, "dvc", "queue", "logs", name)
    rounds = re.findall(r"round \d+: .*?; (\d+) requests sent \(\d+ retries\), (\d+) cache hits", log)
    return sum(int(sent) for sent, _ in rounds), sum(int(hits) for _, hits in rounds)


def test_the_request_cache_makes_the_sweep_pay_for_each_round_once(sweep):
    rows = experiments(sweep)
    assert paid(sweep, rows[0, "code"]["Experiment"]) == (0, 0)  # seed data only
    assert paid(sweep, rows[1, "code"]["Experiment"]) == (0, 50)  # round 1 was paid by the baseline
    assert paid(sweep, rows[3, "code"]["Experiment"]) == (50, 2 * 50)  # round 3 only
    assert paid(sweep, rows[2, "general"]["Experiment"])[0] > 0  # other prompts: paid
    # The metrics describe each output, whoever paid: three rounds' output took 150 requests.
    assert int(rows[3, "code"]["output_requests"]) == 150


def test_plots_diff_draws_pass_at_1_against_rounds(sweep):
    names = sh(sweep, "dvc", "exp", "ls", "--names-only").split()
    data = json.loads(sh(sweep, "dvc", "plots", "diff", *names, "--json"))["data"]
    (plot,) = data["pass_at_1_by_rounds"]
    points = plot["content"]["data"]["values"]
    assert sorted((p["rounds"], p["family"]) for p in points) == [(0, "code"), (1, "code"), (2, "general"), (3, "code")]
    assert plot["content"]["encoding"]["x"]["field"] == "rounds"
    assert plot["content"]["encoding"]["y"]["field"] == "pass@1"


def test_the_documented_exp_show_commands_show_pass_at_1(sweep):
    """docs/experiments.md's `dvc exp show` lines, exactly as printed, show pass@1 per experiment."""
    from test_doc_commands import fenced_blocks

    text = (REPO / "docs/experiments.md").read_text(encoding="utf-8")
    commands = [re.sub(r"\s+#.*$", "", line).strip() for language, lines in fenced_blocks(text) if language == "sh"
                for line in lines if line.startswith("dvc exp show")]
    assert len(commands) >= 2
    for command in commands:
        out = subprocess.run(["bash", "-c", command], cwd=sweep, env=dvc_env(), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "humaneval.pass@1" in out.stdout, (command, out.stdout[:500])


def test_ablation_plot_draws_every_experiment_offline(sweep):
    """`evol ablation-plot`: the paper's figure as a PNG, from the workspace and every experiment."""
    from evolinstruct.cli.ablation import ablation_points

    points = ablation_points(sweep)
    assert {(p.rounds, p.family) for p in points} == {(0, "code"), (1, "code"), (2, "code"), (3, "code"), (2, "general")}
    assert {p.benchmark for p in points} == {"humaneval"}
    assert sh(sweep, "evol", "ablation-plot").startswith("wrote plots/pass_at_1_by_rounds.png")
    png = sweep / "plots/pass_at_1_by_rounds.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
