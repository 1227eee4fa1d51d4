"""Plugin params and versions under DVC, through real DVC on the project's own dvc.yaml: the
`plugins` stage (always run) records per stage the plugin objects it uses, so a change under
`plugins.<name>`, a plugin upgrade or a new plugin changes exactly the stages using one of its
objects, with no command but `dvc repro`; a stage run by hand after an upgrade stops with one line
saying what to run. And the Done-when of issue 23 on the demo project: a new filter plugin,
enabled, then `dvc repro`; upgraded, then `dvc repro` reruns evolve and not evaluate."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO, committed, stand_in_outputs

from evolinstruct.demo.project import dvc_env

pytestmark = pytest.mark.slow

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


def run(project: Path, site: Path, *cmd: str, check: bool = True, strict: str = "1") -> subprocess.CompletedProcess:
    env = {**dvc_env(), "PYTHONPATH": str(site), "EVOLINSTRUCT_STRICT_PLUGINS": strict}
    proc = subprocess.run(list(cmd), cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def changed(project: Path, site: Path) -> dict[str, list]:
    """`dvc status --json`: {stage: what changed}, for stages that changed."""
    out = run(project, site, "dvc", "status", "--json").stdout
    return {name.split(":")[-1]: what for name, what in json.loads(out or "{}").items()}


def evol(project: Path, site: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(project, site, sys.executable, "-m", "evolinstruct.cli.main", *args, check=check)


def settle(project: Path, site: Path) -> dict[str, list]:
    """Run the lock step as `dvc repro` does first, then `dvc status`: what `dvc repro` would rerun."""
    run(project, site, "dvc", "repro", "-s", "-q", "plugins")
    status = changed(project, site)
    assert status.pop("plugins") == ["always changed"]
    return status


@pytest.fixture
def project(tmp_path):
    """The project's dvc.yaml and params.yaml (with the echo backend) in a fresh DVC repository,
    with every dep and out standing in place and committed by `dvc commit`, so `dvc status` starts
    clean without running the pipeline."""
    root, site = tmp_path / "project", tmp_path / "site"
    root.mkdir()
    install(site, "1.0")
    (root / "dvc.yaml").write_text(committed("dvc.yaml"))
    params = yaml.safe_load(committed("params.yaml"))  # as committed, whatever experiments left
    params["evolver"]["backend"] = "echo"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stand_in_outputs(root)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        run(root, site, *cmd)
    run(root, site, "dvc", "repro", "-s", "-q", "plugins")
    lock = yaml.safe_load((root / "plugins.lock.yaml").read_text())
    assert lock["evolve"]["backend"] == {"echo": "evol-echo 1.0"}
    assert lock["evolve"]["params"] == {"echo": {"greeting": "hello"}}
    run(root, site, "dvc", "commit", "-f", "-q")
    assert changed(root, site) == {"plugins": ["always changed"]}  # as quiet as DVC allows
    return root, site


EVOLVE_CHANGED = [{"changed deps": {"plugins.lock.yaml": {"evolve": "modified"}}}]


def test_a_plugin_param_changes_only_the_stages_using_its_objects(project):
    root, site = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["plugins"] = {"echo": {"greeting": "bonjour"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert settle(root, site) == {"evolve": EVOLVE_CHANGED}  # echo's backend: evolve only, not evaluate


def test_a_plugin_upgrade_or_a_new_object_changes_only_the_stages_using_them_with_no_other_command(project):
    root, site = project
    install(site, "1.1")
    # Run by hand, outside `dvc repro`, the stage refuses, naming what to run.
    proc = run(root, site, sys.executable, "-m", "evolinstruct.stages.evolve", check=False)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line == ("evolve: error: plugins.lock.yaml: evolve: the installed plugins differ from the lock file "
                    "(backend echo: evol-echo 1.0 -> evol-echo 1.1) (hint: run `dvc repro`: its `plugins` stage "
                    "records them, and DVC reruns the stages that use them)")
    assert settle(root, site) == {"evolve": EVOLVE_CHANGED}  # a backend: only evolve uses one
    run(root, site, "dvc", "commit", "-f", "-q")
    install(site, "1.2", with_benchmark=True)  # now it also provides a benchmark
    # eliminate decontaminates against every registered benchmark (eliminate.benchmarks: []);
    # evaluate's benchmarks are named in params and unchanged.
    assert settle(root, site) == {"evolve": EVOLVE_CHANGED,
                                  "eliminate": [{"changed deps": {"plugins.lock.yaml": {"eliminate": "modified"}}}]}


def test_a_broken_plugin_stops_the_lock_step_and_is_not_recorded(project):
    root, site = project
    (site / "evol_echo_mod.py").write_text("raise ImportError('half-installed')\n")
    before = (root / "plugins.lock.yaml").read_text()
    proc = run(root, site, "dvc", "repro", check=False, strict="0")  # not strict: as users run it
    assert proc.returncode != 0
    assert ("plugins.lock.yaml: not written: plugin 'echo' (evol-echo 1.0) is broken: failed to load: ImportError: "
            "half-installed") in proc.stdout + proc.stderr
    assert (root / "plugins.lock.yaml").read_text() == before


# --- issue 23, Done when: a new filter plugin in the demo project, installed with pip ----------------

SHOUTY = '''
from evolinstruct.api import Rejection, hookimpl


class Shouty:
    """Rejects an evolved instruction written in capitals."""

    name = "shouty"

    def judge_prompt(self, candidate):
        return None

    def check(self, candidate, judgement):
        return Rejection("shouty", "all capitals") if candidate.instruction.isupper() else None


@hookimpl
def register_filters(register):
    register(Shouty())
'''


def pip_install_shouty(tmp: Path, site: Path, version: str) -> None:
    """`pip install` a small local package (a real wheel build, no index) into `site`."""
    package = tmp / "evol-shouty"
    (package / "evol_shouty").mkdir(parents=True, exist_ok=True)
    (package / "evol_shouty/__init__.py").write_text(SHOUTY)
    (package / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=69"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "evol-shouty"
        version = "{version}"

        [project.entry-points.evolinstruct]
        shouty = "evol_shouty"
    """))
    # pip's --target does not uninstall the old version's dist-info, as an install into an environment does.
    for old in site.glob("evol_shouty*"):
        shutil.rmtree(old)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                    "--upgrade", "--target", str(site), str(package)], check=True, capture_output=True, timeout=300)


def test_a_new_filter_plugin_in_the_demo_needs_only_dvc_repro_and_its_upgrade_reruns_evolve_not_evaluate(
        tmp_path, own_request_cache):
    import re

    from evolinstruct.demo.project import run_demo

    project, site = tmp_path / "demo", tmp_path / "site"
    run_demo(project, REPO, ["rounds=1", "evolver.max_tokens=16", "sft.max_steps=1", "sft.save_steps=1",
                             "evaluate.limit=2", "evaluate.max_new_tokens=8"])  # small: only the reruns matter

    def repro() -> list[str]:
        proc = run(project, site, "dvc", "repro", strict="0")  # as users run it
        return re.findall(r"Running stage '(\w+)'", proc.stdout + proc.stderr)

    pip_install_shouty(tmp_path, site, "1.0")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evolve"]["filters"].append("shouty")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "evolve" in repro()
    lock = yaml.safe_load((project / "plugins.lock.yaml").read_text())
    assert lock["evolve"]["filter"]["shouty"] == "evol-shouty 1.0"
    assert "shouty" not in str(lock["evaluate"])
    assert repro() == ["plugins"]  # nothing else pending

    pip_install_shouty(tmp_path, site, "1.1")  # the upgrade
    stages = repro()
    assert stages[:2] == ["plugins", "evolve"] and "evaluate" not in stages, stages
    assert yaml.safe_load((project / "plugins.lock.yaml").read_text())["evolve"]["filter"]["shouty"] == "evol-shouty 1.1"
