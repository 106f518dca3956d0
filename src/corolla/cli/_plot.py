"""``metrics.png``: every numeric metric of a run, per round, one panel a metric."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..server import History

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PHASES", "history_figure", "numeric_series", "plot_history"]

PHASES = ("train", "evaluate", "server")


def numeric_series(history: History) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """``(phase, metric) -> [(round, value), ...]`` for every finite numeric metric but
    ``num-examples`` (a weight, not a result)."""
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for summary in history.rounds:
        for phase in PHASES:
            for name, value in getattr(summary, phase).items():
                if name == "num-examples" or not isinstance(value, int | float):
                    continue
                if isinstance(value, bool) or not math.isfinite(value):
                    continue
                series.setdefault((phase, name), []).append((summary.round, float(value)))
    return series


def history_figure(history: History, title: str) -> Figure | None:
    """A figure of every numeric metric per round, titled ``title``; None if there is
    nothing to plot. Each panel has the metric's name on its y axis, rounds (whole
    numbers only) on its x axis, and a line per phase that reported it.
    """
    series = numeric_series(history)
    if not series:
        return None
    # The object-oriented API, not pyplot: no global figure state, no GUI backend.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = sorted({name for _, name in series})
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    figure = Figure(figsize=(4.5 * cols, 3.2 * rows + 0.5))
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        for phase in PHASES:
            points = series.get((phase, name))
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=phase)
        ax.set_xlabel("round")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_history(history: History, path: Path, title: str) -> bool:
    """Save :func:`history_figure` to ``path``; False if there is nothing to plot."""
    figure = history_figure(history, title)
    if figure is None:
        return False
    figure.savefig(path, dpi=110)
    return True
