"""Local paths are paths: a model, tokenizer or data file param that looks like a path and does not
exist stops the stage at once naming the param (never tried on the hub), and HF_HUB_OFFLINE=1 is
honoured with one line saying what is missing."""

import os
import subprocess
import sys

import pytest

from evolinstruct.core.errors import ParamsError
from evolinstruct.core.stage import run_stage
from evolinstruct.llm import hf
from evolinstruct.llm.backends import EvolverConfig


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder with the usual top-level folders, as the current directory."""
    for folder in ("models", "data/raw"):
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("value, is_path", [
    ("./mine", True), ("../elsewhere/model", True), ("/abs/model", True), ("~/models/mine", True),
    ("models/mine", True),        # first component is a folder of the project
    ("data/raw/seeds.json", True),
    ("bigcode/starcoder", False), ("gpt2", False), ("sahil280114/codealpaca", False),
])
def test_what_looks_like_a_path(project, value, is_path):
    assert hf.looks_like_path(value) is is_path


def test_a_missing_local_model_is_an_error_naming_the_param(project):
    with pytest.raises(ParamsError) as caught:
        hf.check_source("sft.base_model", "models/mine")
    assert str(caught.value).startswith("params.yaml: sft.base_model: models/mine: no such folder")
    assert "not looked up on the Hugging Face hub" in str(caught.value)
    (project / "models/mine").mkdir()
    assert hf.check_source("sft.base_model", "models/mine") == "models/mine"


def test_home_relative_paths_are_expanded(project, monkeypatch):
    monkeypatch.setenv("HOME", str(project))
    assert hf.check_source("sft.base_model", "~/models") == str(project / "models")


def test_offline_a_hub_model_must_be_in_the_cache(project, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(project / "hub"))
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)  # an offline benchmark load earlier may have set it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ParamsError, match=r"sft.base_model: owner/model is not in the local Hugging Face cache, "
                                          r"and HF_HUB_OFFLINE=1 forbids downloading it"):
        hf.check_source("sft.base_model", "owner/model")
    # The hub cache's layout: refs/main names the snapshot holding the files.
    repo = project / "hub/models--owner--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text("abc123")
    (repo / "snapshots/abc123").mkdir(parents=True)
    (repo / "snapshots/abc123/config.json").write_text("{}")
    assert hf.check_source("sft.base_model", "owner/model") == "owner/model"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hf.check_source("sft.base_model", "other/model") == "other/model"  # online: the hub decides
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # datasets' own switch counts as offline too
    with pytest.raises(ParamsError, match="other/model is not in the local Hugging Face cache"):
        hf.check_source("sft.base_model", "other/model")


def test_sft_stops_at_once_on_a_missing_base_model(project, capsys):
    from evolinstruct.stages import sft

    (project / "params.yaml").write_text("sft:\n  base_model: models/mine\n")
    with pytest.raises(SystemExit) as caught:
        run_stage("sft", sft.main)
    assert caught.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "sft: error: params.yaml: sft.base_model: models/mine: no such folder (hint: it looks like a local path, so "
        "it is not looked up on the Hugging Face hub; fix the path, or give a hub id as owner/name)"]


def test_the_transformers_evolver_checks_its_model_before_any_work(project, registry):
    from evolinstruct.stages.evolve import make_backend

    with pytest.raises(ParamsError, match=r"evolver.model: \./models/evolver: no such folder"):
        make_backend(EvolverConfig(backend="transformers", model="./models/evolver"))


@pytest.mark.parametrize("stage", ["eliminate", "evaluate"])
def test_a_missing_benchmark_file_names_the_param_before_anything_loads(project, capsys, stage):
    import importlib

    module = importlib.import_module(f"evolinstruct.stages.{stage}")
    (project / "params.yaml").write_text(
        f"{stage}:\n  benchmarks: [mbpp]\n  benchmark_options: {{mbpp: {{path: data/benchmarks/mbpp.json}}}}\n")
    with pytest.raises(SystemExit):
        run_stage(stage, module.main)
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{stage}: error: params.yaml: {stage}.benchmark_options.mbpp.path: data/benchmarks/mbpp.json: no such file "
        "or folder (hint: fix the path (relative paths start at the project folder))"]


def test_an_offline_hub_benchmark_is_one_line(tmp_path):
    """`evol eval-samples` on a hub benchmark that is not cached, with HF_HUB_OFFLINE=1 (read when
    `datasets` is imported, hence a process of its own) and an empty cache."""
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"task_id": "Mbpp/11", "completion": "pass"}\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "evolinstruct.cli.main", "eval-samples", str(samples), "--benchmark", "mbpp"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "benchmark 'mbpp': its data is not available here" in lines[0], proc.stderr
    assert "google-research-datasets/mbpp" in lines[0] and "--problem-file FILE" in lines[0]


def test_hub_lines_are_printed_once(tmp_path):
    """`huggingface_hub` and `datasets` give their top logger a handler of their own and still
    propagate to the root, where the stage's handler would print every line a second time."""
    script = (
        "import logging\n"
        "from evolinstruct.core.stage import run_stage\n"
        "def main():\n"
        "    from huggingface_hub.utils import logging as hub_logging\n"
        "    hub_logging.get_logger('huggingface_hub.file_download').warning('hub line')\n"
        "    logging.getLogger('quiet').addHandler(logging.NullHandler())\n"
        "    logging.getLogger('quiet.child').warning('library line')\n"
        "    logging.getLogger('evolinstruct.x').info('our line')\n"
        "run_stage('x', main)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["hub line", "x: library line", "x: our line"]
