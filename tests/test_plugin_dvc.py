"""Plugin params and versions under DVC, through real DVC on the project's own dvc.yaml: a change
under `plugins.<name>` and a plugin upgrade (recorded by `evol plugins --lock`) each make
`dvc status` show exactly the stages that use plugins of that kind as changed, and a stage whose
installed plugins differ from the lock file stops with one line saying what to run."""

import json
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import REPO, committed

from evolinstruct.demo.project import dvc_env

pytestmark = pytest.mark.slow
PLUGIN_STAGES = {"evolve", "eliminate", "evaluate"}

ECHO_PLUGIN = """
    from pydantic import BaseModel, ConfigDict

    from evolinstruct.api import Backend, Completion, Problem, hookimpl


    class EchoParams(BaseModel):
        model_config = ConfigDict(extra="forbid")
        greeting: str = "hello"


    class Echo(Backend):
        name = "echo"

        async def complete(self, prompt, sampling):
            return Completion(prompt)


    class One:
        name = "one"

        def load(self, options):
            return [Problem("one/0", "def one():\\n", "assert one() == 1", "one")]

        def instruction(self, problem):
            return problem.prompt

        def program(self, problem, code):
            return code + "\\n" + problem.test


    @hookimpl
    def params_schema():
        return EchoParams


    @hookimpl
    def register_backends(register):
        register(Echo)
"""
BENCHMARK_HOOK = """

    @hookimpl
    def register_benchmarks(register):
        register(One())
"""


def install(site: Path, version: str, with_benchmark: bool = False) -> None:
    """The distribution `evol-echo` at `version`, as pip would leave it (a dist-info folder)."""
    for old in site.glob("evol_echo-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    dist = site / f"evol_echo-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: evol-echo\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text("[evolinstruct]\necho = evol_echo_mod\n")
    (site / "evol_echo_mod.py").write_text(textwrap.dedent(ECHO_PLUGIN + (BENCHMARK_HOOK if with_benchmark else "")))


def run(project: Path, site: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**dvc_env(), "PYTHONPATH": str(site), "EVOLINSTRUCT_STRICT_PLUGINS": "1"}
    proc = subprocess.run(list(cmd), cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def changed(project: Path, site: Path) -> dict[str, list]:
    """`dvc status --json`: {stage: what changed}, for stages that changed."""
    out = run(project, site, "dvc", "status", "--json").stdout
    return {name.split(":")[-1]: what for name, what in json.loads(out or "{}").items()}


def evol(project: Path, site: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(project, site, sys.executable, "-m", "evolinstruct.cli.main", *args, check=check)


@pytest.fixture
def project(tmp_path):
    """The project's dvc.yaml and params.yaml in a fresh DVC repository, with every dep and out
    standing in place and committed by `dvc commit`, so `dvc status` starts clean without running
    the pipeline."""
    root, site = tmp_path / "project", tmp_path / "site"
    root.mkdir()
    install(site, "1.0")
    for name in ("dvc.yaml", "params.yaml"):
        (root / name).write_text(committed(name))  # params.yaml as committed, whatever experiments left
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for section in ("deps", "outs", "metrics", "plots"):
            for item in stage.get(section, []):
                path = root / (item if isinstance(item, str) else next(iter(item)))
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}" if path.suffix == ".json" else "x\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "placeholder").write_text("x\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        run(root, site, *cmd)
    evol(root, site, "plugins", "--lock")
    assert yaml.safe_load((root / "plugins.lock.yaml").read_text())["backend"] == {
        "evol-echo": "1.0", "evolinstruct": metadata.version("evolinstruct")}
    run(root, site, "dvc", "commit", "-f", "-q")
    assert changed(root, site) == {}
    return root, site


def test_a_param_change_under_plugins_name_changes_exactly_the_stages_that_use_plugins(project):
    root, site = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["plugins"] = {"echo": {"greeting": "bonjour"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert changed(root, site) == {name: [{"changed deps": {"params.yaml": {"plugins": "modified"}}}]
                                   for name in PLUGIN_STAGES}


def test_a_plugin_upgrade_stops_its_stage_until_locked_then_changes_the_stages_that_use_its_kind(project):
    root, site = project
    install(site, "1.1")
    # The lock file no longer matches what is installed: the stage refuses, naming what to run.
    proc = run(root, site, sys.executable, "-m", "evolinstruct.stages.evolve", check=False)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line == ("evolve: error: plugins.lock.yaml: backend: the installed plugins differ from the lock file "
                    "(evol-echo 1.0 -> 1.1) (hint: run `evol plugins --lock` to record them (DVC then reruns the "
                    "stages that use them))")
    assert changed(root, site) == {}  # DVC cannot know until the lock file says so
    evol(root, site, "plugins", "--lock")
    # A backend: only evolve uses one.
    assert changed(root, site) == {"evolve": [{"changed deps": {"plugins.lock.yaml": {"backend": "modified"}}}]}
    run(root, site, "dvc", "commit", "-f", "-q")
    install(site, "1.2", with_benchmark=True)  # now it also provides a benchmark
    evol(root, site, "plugins", "--lock")
    benchmark = [{"changed deps": {"plugins.lock.yaml": {"benchmark": "modified"}}}]
    assert changed(root, site) == {"evolve": [{"changed deps": {"plugins.lock.yaml": {"backend": "modified"}}}],
                                   "eliminate": benchmark, "evaluate": benchmark}
