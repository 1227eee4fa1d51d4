from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from evolinstruct.registry import ENV_STRICT, get_registry, reset_registry

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Strict plugin checks in every test and every stage a test starts: a misspelled hook or a broken
# plugin fails instead of being skipped with a warning (evolinstruct.pytest_plugin does the same
# for plugin authors' tests).
os.environ.setdefault(ENV_STRICT, "1")
# The request cache defaults to the user's cache folder; tests never touch the real one.
os.environ.setdefault("EVOLINSTRUCT_CACHE", str(Path(tempfile.mkdtemp(prefix="evol-test-cache-")) / "requests.sqlite"))


def committed(name: str) -> str:
    """A project file as committed at HEAD: tests never read the working tree's params.yaml, which
    `dvc exp run -S` edits in place (a failed experiment leaves its value there)."""
    proc = subprocess.run(["git", "show", f"HEAD:{name}"], cwd=REPO, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else (REPO / name).read_text(encoding="utf-8")


#: What the stages, `evol demo` and the schema tests read from the project, as `source` copies it.
SOURCE_FILES = ("dvc.yaml", "params.yaml", "prices.yaml", "plugins.lock.yaml", "profiles/demo.yaml")


@pytest.fixture(scope="session")
def source(tmp_path_factory) -> Path:
    """A pristine copy of the project's pipeline files (`evol demo --source`): params.yaml as
    committed, whatever experiments did to the working tree's; the rest as in the working tree."""
    folder = tmp_path_factory.mktemp("source")
    for name in SOURCE_FILES:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == "params.yaml":
            target.write_text(committed(name), encoding="utf-8")
        elif (REPO / name).exists():
            target.write_bytes((REPO / name).read_bytes())
    return folder


def stand_in_outputs(root: Path) -> None:
    """Put a small file or folder at every dep and out of `root`/dvc.yaml that is not there yet, so
    that `dvc commit` can record them and `dvc status` reads only what a test then changes."""
    import yaml

    for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values():
        for section in ("deps", "outs", "metrics", "plots"):
            for item in stage.get(section, []):
                path = root / (item if isinstance(item, str) else next(iter(item)))
                if path.exists():  # written by the test (plugins.lock.yaml, say): kept
                    continue
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}" if path.suffix == ".json" else "x\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "placeholder").write_text("x\n")


def start_stage(name: str, cwd: Path, **env: str) -> subprocess.Popen:
    """Start a stage as DVC runs it (`python -m evolinstruct.stages.<name>` in the project folder)."""
    return subprocess.Popen([sys.executable, "-m", f"evolinstruct.stages.{name}"], cwd=cwd,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_stage(name: str, cwd: Path, timeout: float = 600, **env: str) -> tuple[int, str]:
    """Run a stage to the end: (exit code, stderr)."""
    proc = start_stage(name, cwd, **env)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.fixture
def registry(monkeypatch):
    """A fresh process-wide registry, strict, with no plugin disabled; forgotten afterwards."""
    monkeypatch.delenv("EVOLINSTRUCT_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv(ENV_STRICT, "1")
    reset_registry()
    yield get_registry()
    reset_registry()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from evolinstruct.demo.tiny import build_tiny_model

    corpus = [json.loads(line)["output"] for line in (REPO / "evolinstruct/demo_data/seed.jsonl").read_text().splitlines()]
    corpus += ["Below is an instruction that describes a task.", "### Instruction:", "### Response:"]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", corpus * 4, seed=3)


@pytest.fixture(scope="module")
def own_request_cache(tmp_path_factory):
    """A request cache for this module alone, so that what other tests paid for cannot turn this
    module's requests into cache hits."""
    previous = os.environ.get("EVOLINSTRUCT_CACHE")
    os.environ["EVOLINSTRUCT_CACHE"] = str(tmp_path_factory.mktemp("request-cache") / "requests.sqlite")
    yield
    if previous is None:
        os.environ.pop("EVOLINSTRUCT_CACHE", None)
    else:
        os.environ["EVOLINSTRUCT_CACHE"] = previous
