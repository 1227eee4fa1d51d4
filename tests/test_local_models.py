"""Local models and benchmark files are tracked by content: new weights make `dvc status` list
exactly the stages that use them (through real DVC on the project's dvc.yaml), and the request
cache keys a local evolver by the hash of its files, never its path."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, committed, stand_in_outputs

from evolinstruct.demo.project import dvc_env
from evolinstruct.llm.backends import Sampling
from evolinstruct.llm.request_cache import request_key


def sh(cwd: Path, *cmd: str) -> str:
    proc = subprocess.run(list(cmd), cwd=cwd, env=dvc_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def fake_model(folder: Path, weights: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}\n')
    (folder / "model.safetensors").write_bytes(weights)


def changed_stages(root: Path) -> set[str]:
    """What `dvc status` lists, less the `plugins` stage, which is always changed (docs/plugins.md)."""
    status = json.loads(sh(root, "dvc", "status", "--json") or "{}")
    assert status.pop("plugins") == ["always changed"]
    return set(status)


@pytest.mark.slow
def test_new_weights_or_benchmark_files_make_dvc_status_list_exactly_the_stages_using_them(tmp_path):
    """The project's dvc.yaml with every dep and out standing in place and recorded by `dvc commit`,
    local models under models/base/ and models/evolver/ added with `dvc add`, as a user would."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    (root / "plugins.lock.yaml").write_text((REPO / "plugins.lock.yaml").read_text())
    params = yaml.safe_load(committed("params.yaml"))
    params["evolver"].update(backend="transformers", model="models/evolver/tiny")
    params["sft"]["base_model"] = "models/base/tiny"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stand_in_outputs(root)
    fake_model(root / "models/base/tiny", b"base weights v1")
    fake_model(root / "models/evolver/tiny", b"evolver weights v1")
    (root / "data/benchmarks/mbpp.jsonl").write_text('{"task_id": 11}\n')
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                ["dvc", "add", "-q", "models/base/tiny", "models/evolver/tiny"], ["dvc", "commit", "-f", "-q"]):
        sh(root, *cmd)
    assert changed_stages(root) == set()

    (root / "models/base/tiny/model.safetensors").write_bytes(b"base weights v2")
    assert changed_stages(root) == {"sft", "models/base/tiny.dvc"}
    (root / "models/base/tiny/model.safetensors").write_bytes(b"base weights v1")
    assert changed_stages(root) == set()

    (root / "models/evolver/tiny/model.safetensors").write_bytes(b"evolver weights v2")
    assert changed_stages(root) == {"evolve", "models/evolver/tiny.dvc"}
    (root / "models/evolver/tiny/model.safetensors").write_bytes(b"evolver weights v1")

    (root / "data/benchmarks/mbpp.jsonl").write_text('{"task_id": 12}\n')
    assert changed_stages(root) == {"eliminate", "evaluate"}


def test_the_request_key_holds_a_local_models_content_not_its_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sampling = Sampling(temperature=1.0, top_p=0.9, max_tokens=16)

    def key(model: str, revision: str = "") -> str:
        return request_key("transformers", model, sampling, "Write a sort.", 1, revision=revision)

    fake_model(tmp_path / "models/evolver/tiny", b"v1")
    first = key("models/evolver/tiny")
    assert key(str(tmp_path / "models/evolver/tiny")) == first  # however the path is spelled
    shutil.copytree(tmp_path / "models/evolver/tiny", tmp_path / "elsewhere")
    assert key("elsewhere") == first  # the same files elsewhere: the same answers
    (tmp_path / "models/evolver/tiny/model.safetensors").write_bytes(b"v2")
    assert key("models/evolver/tiny") != first  # new weights: never the old weights' answers
    # A hub id is its name and pinned revision (nothing to hash here).
    assert key("Qwen/Qwen2.5-Coder-7B") != key("Qwen/Qwen2.5-Coder-7B", revision="abc123")
    assert key("gpt-4o") == request_key("transformers", "gpt-4o", sampling, "Write a sort.", 1)
