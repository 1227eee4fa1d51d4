"""Static images of the plots a user reads, so they can be looked at offline.

`dvc plots show` renders the JSON plots with Vega-Lite loaded from a CDN, which draws nothing
without a network; a PNG next to each JSON plot is listed by DVC as an image plot and shows
everywhere (the HTML page, an IDE, a pull request). matplotlib is imported only here, lazily, so
stages that draw nothing do not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path


def _pyplot():
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")  # never a window, whatever the user's matplotlibrc says
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Write atomically (same folder, then rename), like every other output."""
    from evolinstruct.core.atomic import atomic_open

    with atomic_open(path, "wb") as handle:
        # No timestamp in the file, so the same data gives the same bytes (and the same DVC hash).
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)


def line_plot(path: str | os.PathLike[str], series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
              title: str, xlabel: str, ylabel: str) -> None:
    """One line per series name, each given as (xs, ys)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o" if len(xs) <= 20 else None, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    _save(fig, Path(path))


def stacked_bars(path: str | os.PathLike[str], categories: Sequence[str], stacks: Mapping[str, Sequence[float]], *,
                 title: str, xlabel: str, ylabel: str) -> None:
    """Bars over `categories`, each stacked from `stacks` (name -> one value per category)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bottom = [0.0] * len(categories)
    for name, values in stacks.items():
        ax.bar(list(categories), list(values), bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    _save(fig, Path(path))


def horizontal_bars(path: str | os.PathLike[str], values: Mapping[str, float], *, title: str, xlabel: str) -> None:
    """One bar per label, largest on top (rejects by reason, pass@1 by benchmark)."""
    plt = _pyplot()
    items = sorted(values.items(), key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(6.4, max(1.6, 0.35 * len(items) + 1.0)))
    ax.barh([label for label, _ in items], [value for _, value in items])
    for index, (_, value) in enumerate(items):
        ax.annotate(f"{value:g}", (value, index), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set(title=title, xlabel=xlabel)
    _save(fig, Path(path))
