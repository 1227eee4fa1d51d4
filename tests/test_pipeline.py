"""The demo pipeline through real DVC: full run, no-op rerun, and a param change that reruns only
its stage and what is downstream of it."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evolinstruct.core.records import read_records
from evolinstruct.demo.project import dvc_env, run_demo

pytestmark = pytest.mark.slow
STAGES = ["seed", "evolve", "eliminate", "merge_shuffle", "sft", "evaluate"]


def dvc(project, *args):
    proc = subprocess.run(["dvc", *args], cwd=project, env=dvc_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def ran(output):
    """The stages `dvc repro` ran, less the lock step it runs every time (`plugins`, always_changed)."""
    stages = re.findall(r"Running stage '(\w+)'", output)
    assert stages[:1] == ["plugins"], output
    return stages[1:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, own_request_cache, source):
    project = tmp_path_factory.mktemp("demo") / "project"
    run_demo(project, source)
    return project


def test_demo_runs_every_stage_and_writes_every_output(demo):
    seeds = read_records(demo / "data/seed/seed.jsonl")
    assert len(seeds) == 25 and any("\nsentence = " in s.instruction for s in seeds)  # input appended
    rounds = yaml.safe_load((demo / "params.yaml").read_text())["rounds"]
    for k in range(1, rounds + 1):
        attempts = read_records(demo / f"data/evolved/round_{k}.jsonl")
        assert len(attempts) == len(seeds) and {a.round for a in attempts} == {k}
        assert all(a.backend == "transformers" and a.heuristic.startswith("code_") for a in attempts)
    train = read_records(demo / "data/merged/train.jsonl")
    kept = read_records(demo / "data/eliminated/kept.jsonl")
    removed = read_records(demo / "data/eliminated/removed.jsonl")
    assert len(kept) + len(removed) == len(seeds) * (rounds + 1)  # every record kept or removed with a reason
    assert all(r.reasons for r in removed)
    assert sorted(r.id for r in train) == sorted(r.id for r in kept)
    assert json.loads((demo / "data/eliminated/decontamination.json").read_text())["humaneval"]["problems"] == 164
    assert (demo / "models/sft/training_config.json").exists()
    scores = json.loads((demo / "metrics/evaluate.json").read_text())
    assert 0.0 <= scores["humaneval"]["pass@1"] <= 1.0 and scores["humaneval"]["problems"] == 8
    evolve = json.loads((demo / "metrics/evolve.json").read_text())
    assert evolve["output_records"] == rounds * len(seeds)
    assert json.loads((demo / "plots/sft_loss.json").read_text())


def test_second_repro_runs_nothing(demo):
    out = dvc(demo, "repro")
    assert ran(out) == []
    assert all(f"Stage '{s}' didn't change" in out for s in STAGES)
    assert "unchanged: plugins.lock.yaml" in out
    assert dvc(demo, "status").split() == ["plugins:", "always", "changed"]  # as quiet as DVC allows


def test_changing_one_param_reruns_that_stage_and_downstream_only(demo):
    params = yaml.safe_load((demo / "params.yaml").read_text())
    params["merge_shuffle"]["seed"] += 1
    (demo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(dvc(demo, "repro")) == ["merge_shuffle", "sft", "evaluate"]
    params["evaluate"]["limit"] = 4
    (demo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(dvc(demo, "repro")) == ["evaluate"]


def test_an_extra_round_sends_requests_for_that_round_only(demo):
    params = yaml.safe_load((demo / "params.yaml").read_text())
    params["rounds"] += 1
    (demo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc(demo, "repro", "evolve")
    evolve = json.loads((demo / "reports/evolve.json").read_text())["rounds"]
    assert all(evolve[str(k)]["requests_sent"] == 0 for k in range(1, params["rounds"]))
    assert evolve[str(params["rounds"])]["requests_sent"] > 0, out


def test_main_params_without_a_key_fail_at_once_with_one_clear_message(tmp_path, monkeypatch, source):
    (tmp_path / "data/seed").mkdir(parents=True)
    (tmp_path / "data/seed/seed.jsonl").write_text(json.dumps({"id": "a", "instruction": "i", "output": "o"}) + "\n")
    (tmp_path / "params.yaml").write_text((source / "params.yaml").read_text())
    env = {k: v for k, v in dvc_env().items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    proc = subprocess.run([sys.executable, "-m", "evolinstruct.stages.evolve"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "OPENAI_API_KEY is not set" in lines[0] and "make demo" in lines[0]
    assert not (tmp_path / "data/evolved").exists() or not list(Path(tmp_path / "data/evolved").glob("round_*"))
