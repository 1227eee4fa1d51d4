"""The example plugin package, installed with pip into a fresh virtual environment beside the
project, is listed by `evol plugins` and used by a demo run: with no change to evolinstruct."""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from conftest import REPO

from evolinstruct.core.records import read_records

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples/evolinstruct-plugin-example"


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    """A new venv that sees this environment's packages (evolinstruct, its dependencies, pip and
    setuptools: installing torch again would take minutes) but gets the plugin installed into its
    own site-packages, by pip, from the example folder."""
    root = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin/python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "host-env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    source = root.parent / "example"  # a copy: building in place would leave build/ in the checkout
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", str(source)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return root


def run(env, *args, cwd=None, module="evolinstruct.cli.main"):
    bin_dir = env / "bin"
    path = f"{bin_dir}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run([bin_dir / "python", "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_plugin_is_not_installed_here_but_is_listed_there(fresh_env):
    here = subprocess.run([sys.executable, "-m", "evolinstruct.cli.main", "plugins", "--json"],
                          capture_output=True, text=True, check=True).stdout
    assert "evolinstruct-plugin-example" not in here
    plugins = {p["name"]: p for p in json.loads(run(fresh_env, "plugins", "--json"))}
    example = plugins["example"]
    assert example["distribution"].startswith("evolinstruct-plugin-example") and example["status"] == "loaded"
    registers = example["registers"]
    assert registers["heuristic"] == ["code_type_hints", "typed_edge_cases", "typed_signature"]
    assert example["families"] == {"code": ["code_type_hints"], "typed": ["typed_edge_cases", "typed_signature"]}
    assert registers["filter"] == ["todo_left"] and registers["benchmark"] == ["tiny_arith"]
    assert registers["backend"] == ["echo"] and example["params"] == ["difficulty", "markers"]
    assert not (Path(sysconfig.get_paths()["purelib"]) / "evolinstruct_plugin_example").exists()


def test_the_example_plugins_own_tests_pass_with_the_fixtures_evolinstruct_installs(fresh_env, tmp_path):
    out = run(fresh_env, str(EXAMPLE / "tests"), "-q", "-p", "no:cacheprovider", cwd=tmp_path, module="pytest")
    summary = out.strip().splitlines()[-1]  # "6 passed in 0.33s", maybe framed by "=": nothing failed or errored
    assert re.fullmatch(r"=* ?\d+ passed in [\d.]+s( \([\d:]+\))? ?=*", summary), out[-3000:]


def test_a_demo_run_uses_the_plugins_heuristic_filter_and_benchmark(fresh_env, tmp_path, source):
    project = tmp_path / "demo"
    run(fresh_env, "demo", "--dir", str(project), "--source", str(source),
        "--set", "evolve.filters=[copied_prompt_words, sorry, stopwords_only, todo_left]",
        "--set", "evaluate.benchmarks=[humaneval, tiny_arith]", "--set", "evaluate.limit=5")
    heuristics = {r.heuristic for k in (1, 2) for r in read_records(project / f"data/evolved/round_{k}.jsonl")}
    assert "code_type_hints" in heuristics
    scores = json.loads((project / "metrics/evaluate.json").read_text())
    assert scores["tiny_arith"]["problems"] == 5 and 0.0 <= scores["tiny_arith"]["pass@1"] <= 1.0
    params = (project / "params.yaml").read_text()
    assert "todo_left" in params  # the plugin's filter ran in every round (it would fail the stage if unknown)
