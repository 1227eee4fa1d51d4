"""pass@1 against evolution rounds across DVC experiments: the paper's central figure, offline.

`dvc plots diff` draws the same figure from each experiment's `plots/ablation.json`, but as a
Vega-Lite page that needs a network; this reads the same numbers through DVC's Python API
(`dvc.api.exp_show`: the workspace, its baseline and every experiment) and draws a PNG.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from evolinstruct.core.errors import EvolError

PASS_AT_1 = "pass@1"


@dataclass(frozen=True)
class AblationPoint:
    experiment: str
    rounds: int
    family: str
    benchmark: str
    pass_at_1: float


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def points_from_rows(rows: list[dict]) -> list[AblationPoint]:
    """Rows as `dvc.api.exp_show` returns them (one flat dict per experiment) to plot points.

    A metric column is any key ending in `pass@1` (`humaneval.pass@1`, or with DVC's file prefix
    when names collide); the benchmark is what comes before it. Rows without `rounds` (an
    experiment that failed before writing params) or without a score are skipped.
    """
    points = []
    for row in rows:
        rounds = _number(row.get("rounds"))
        if rounds is None:
            continue
        name = str(row.get("Experiment") or row.get("rev") or "workspace")
        family = str(row.get("evolve.family") or row.get("family") or "")
        for key, value in row.items():
            score = _number(value)
            if score is None or not str(key).endswith(PASS_AT_1):
                continue
            benchmark = str(key)[: -len(PASS_AT_1)].rstrip(".:").rsplit(":", 1)[-1] or "pass@1"
            points.append(AblationPoint(name, int(rounds), family, benchmark, score))
    return points


def exp_rows(project: str | os.PathLike[str] = ".") -> list[dict]:
    """`dvc.api.exp_show` of `project` (one flat dict per experiment), or one line saying why not."""
    import dvc.api

    try:
        return dvc.api.exp_show(repo=str(project))
    except Exception as exc:  # DVC raises its own errors for "not a DVC repository" and friends
        raise EvolError(f"{project}: could not read experiments: {exc}",
                        "run it in the DVC project, after `dvc exp run` (see docs/experiments.md)") from None


def ablation_points(project: str | os.PathLike[str] = ".") -> list[AblationPoint]:
    points = points_from_rows(exp_rows(project))
    if not points:
        raise EvolError(f"{project}: no experiment has a pass@1 metric yet",
                        "run the pipeline through `evaluate` first (`dvc repro` or `dvc exp run`)")
    return points


def draw_ablation(points: list[AblationPoint], out: str | os.PathLike[str]) -> None:
    """One line per benchmark (and family, when experiments differ in it), sorted by rounds."""
    from evolinstruct.core.plots import line_plot

    families = {p.family for p in points}
    series: dict[str, dict[int, float]] = {}
    for point in points:
        label = point.benchmark if len(families) == 1 else f"{point.benchmark} ({point.family})"
        # Experiments repeating a rounds value (e.g. the workspace and its experiment) plot once.
        series.setdefault(label, {})[point.rounds] = point.pass_at_1
    lines = {label: (sorted(by_round), [by_round[r] for r in sorted(by_round)]) for label, by_round in series.items()}
    line_plot(Path(out), lines, title="pass@1 against evolution rounds", xlabel="rounds", ylabel="pass@1")
