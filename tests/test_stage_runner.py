"""How a stage run by DVC reports a refused param: one line, which in the workspace also says that a
`dvc exp run -S` value stays in params.yaml and how to get back (DVC writes it before running)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evolinstruct.core.stage import SET_STAYS


def run_seed(cwd: Path, **env: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "evolinstruct.stages.seed"], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", **env})
    assert proc.returncode == 1
    return proc.stderr.strip().splitlines()


@pytest.fixture
def bad_params(tmp_path) -> Path:
    (tmp_path / "params.yaml").write_text("rounds: -1\n")  # what `dvc exp run -S rounds=-1` leaves behind
    return tmp_path


def test_in_the_dvc_workspace_the_line_says_the_value_stays_and_how_to_restore(bad_params):
    (line,) = run_seed(bad_params, DVC_STAGE="seed", DVC_ROOT=str(bad_params))
    assert line.startswith("seed: error: params.yaml: rounds: -1 should be greater than or equal to 0")
    assert line.endswith(f"({SET_STAYS})")
    assert "git checkout params.yaml" in line and "--temp" in line and "--queue" in line


@pytest.mark.parametrize("env", [{}, {"DVC_STAGE": "seed", "DVC_ROOT": "/somewhere/else"}],
                         ids=["by hand", "a --temp or --queue copy"])
def test_outside_the_workspace_the_line_is_the_plain_error(bad_params, env):
    (line,) = run_seed(bad_params, **env)
    assert line == "seed: error: params.yaml: rounds: -1 should be greater than or equal to 0"


def test_a_stage_that_draws_round_labels_prints_nothing_from_matplotlib(tmp_path, monkeypatch):
    """The cascade plot's categories are rounds ("0", "1", ...): matplotlib logs one INFO line per
    bar series about them, which `eliminate` printed on every run."""
    code = ("from evolinstruct.core.stage import run_stage\n"
            "from evolinstruct.core.plots import stacked_bars\n"
            "run_stage('eliminate', lambda: stacked_bars('cascade.png', ['0', '1', '2'], "
            "{'kept': [3, 2, 1], 'removed': [0, 1, 2]}, title='t', xlabel='x', ylabel='y'))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and (tmp_path / "cascade.png").exists(), proc.stderr
    assert proc.stderr == ""


def test_prices_come_from_prices_yaml_with_params_overriding_a_model(tmp_path):
    """Prices are not a stage param: prices.yaml holds them; `evolver.prices` overrides a model."""
    from evolinstruct.core.errors import ParamsError
    from evolinstruct.llm.cost import load_prices, price_for

    shipped = Path(__file__).resolve().parent.parent / "prices.yaml"
    table = load_prices(shipped, overrides={"gpt-4o": {"input": 1.0, "output": 2.0}})
    assert table["gpt-4o-mini"] == {"input": 0.15, "output": 0.6} and table["gpt-4o"] == {"input": 1.0, "output": 2.0}
    assert price_for(table, "gpt-4o").cost(1_000_000, 1_000_000) == 3.0
    assert load_prices(tmp_path / "none.yaml") == {}  # no file: no prices (cost shown as "?")
    (tmp_path / "prices.yaml").write_text("gpt-x: {input: 1, outptu: 2}\n")
    with pytest.raises(ParamsError) as info:
        load_prices(tmp_path / "prices.yaml")
    assert str(info.value).startswith(f"{tmp_path / 'prices.yaml'}: gpt-x.outptu: ")
