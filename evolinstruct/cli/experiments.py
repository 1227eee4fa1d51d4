"""`evol experiments`: one screen of results, one row per experiment.

`dvc exp show` prints every param and metric (hundreds of columns); filtered as
docs/experiments.md says it fits 100 columns, but its headers are the full keys. This reads the
same rows through DVC's Python API (`dvc.api.exp_show`) and keeps what an ablation is read for:
rounds, heuristic family, pass@1 per benchmark, and what the evolved data cost (whether this
experiment paid or the cache answered: `output_cost_usd`, `output_requests`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from evolinstruct.cli.ablation import PASS_AT_1, _number, exp_rows

#: The experiment column is cut to this many characters (DVC's names are short; branch names may not be).
NAME_WIDTH = 28


@dataclass
class Row:
    name: str
    rounds: int | None
    family: str
    scores: dict[str, float] = field(default_factory=dict)
    cost_usd: float | None = None
    requests: int | None = None


def _name(row: dict) -> str:
    """`workspace` or the baseline's branch (or sha), and `  name [sha]` for an experiment under it."""
    name, rev = str(row.get("Experiment") or ""), str(row.get("rev") or "")
    if row.get("typ") == "baseline" or not name:
        return rev or "workspace"
    return f"  {name} [{rev[:7]}]" if rev and rev != "workspace" else f"  {name}"


def rows_from(exp_rows: list[dict]) -> list[Row]:
    """`dvc.api.exp_show` rows (flat dicts) to table rows, in DVC's order (workspace, baseline,
    its experiments). A metric key ending in `pass@1` is a benchmark's score, named by what precedes it."""
    rows = []
    for exp in exp_rows:
        if exp.get("State") in ("Queued", "Failed"):
            continue
        rounds = _number(exp.get("rounds"))
        requests = _number(exp.get("output_requests"))
        row = Row(_name(exp), None if rounds is None else int(rounds), str(exp.get("evolve.family") or ""),
                  cost_usd=_number(exp.get("output_cost_usd")), requests=None if requests is None else int(requests))
        for key, value in exp.items():
            score = _number(value)
            if score is not None and str(key).endswith(PASS_AT_1):
                row.scores[str(key)[: -len(PASS_AT_1)].rstrip(".:").rsplit(":", 1)[-1] or "pass@1"] = score
        rows.append(row)
    return rows


def render(rows: list[Row]) -> str:
    """A plain table: experiment, rounds, family, one pass@1 column per benchmark, cost, requests."""
    benchmarks = sorted({b for row in rows for b in row.scores})
    header = ["experiment", "rounds", "family", *benchmarks, "cost $", "requests"]

    def cells(row: Row) -> list[str]:
        name = row.name if len(row.name) <= NAME_WIDTH else row.name[: NAME_WIDTH - 1] + "…"
        return [name, "-" if row.rounds is None else str(row.rounds), row.family or "-",
                *(f"{row.scores[b]:.3f}" if b in row.scores else "-" for b in benchmarks),
                "-" if row.cost_usd is None else f"{row.cost_usd:.4f}",
                "-" if row.requests is None else f"{row.requests:,}"]

    table = [header, *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 or i == 2 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip()
             for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def experiments(project: str | os.PathLike[str] = ".") -> list[Row]:
    """One row per experiment of the DVC project `project`, in DVC's order."""
    return rows_from(exp_rows(project))
