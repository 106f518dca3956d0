"""What a finished run leaves behind: history.json, final.npz, metrics.png, a summary table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ..core import ArrayRecord
from ..server import History

__all__ = ["plot_history", "summary_table", "write_outputs"]

_PHASES = ("train", "evaluate", "server")


def write_outputs(
    output: Path, history: History, arrays: ArrayRecord | None, run_info: dict[str, Any]
) -> list[Path]:
    """Write the run's files into ``output``; return the paths written."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    history.save(output / "history.json")
    written.append(output / "history.json")
    if arrays is not None:
        arrays_by_name: dict[str, Any] = {name: np.asarray(a) for name, a in arrays.items()}
        np.savez(output / "final.npz", **arrays_by_name)
        written.append(output / "final.npz")
    if plot_history(history, output / "metrics.png"):
        written.append(output / "metrics.png")
    (output / "run.json").write_text(json.dumps(run_info, indent=2, default=str) + "\n")
    written.append(output / "run.json")
    return written


def _numeric_series(history: History) -> dict[tuple[str, str], list[tuple[int, float]]]:
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for summary in history.rounds:
        for phase in _PHASES:
            for name, value in getattr(summary, phase).items():
                if name == "num-examples" or not isinstance(value, int | float):
                    continue
                if isinstance(value, bool) or not math.isfinite(value):
                    continue
                series.setdefault((phase, name), []).append((summary.round, float(value)))
    return series


def plot_history(history: History, path: Path) -> bool:
    """Plot every numeric metric per round into ``path``; False if there is nothing to plot."""
    series = _numeric_series(history)
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = sorted({name for _, name in series})
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for phase in _PHASES:
            points = series.get((phase, name))
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=phase)
        ax.set_title(name)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_table(history: History, max_rows: int = 12) -> Table:
    """A table of the metrics per round (the last rounds when there are many)."""
    columns = sorted({(p, n) for p, n in _numeric_series(history)})
    table = Table(title="Run summary", show_lines=False)
    table.add_column("round", justify="right")
    table.add_column("nodes ok/failed", justify="right")
    for phase, name in columns:
        table.add_column(f"{phase} {name}", justify="right")
    rounds = history.rounds
    if len(rounds) > max_rows:
        rounds = rounds[:1] + rounds[-(max_rows - 1) :]
    for summary in rounds:
        cells = [str(summary.round), f"{summary.train_replies}/{summary.train_failures}"]
        for phase, name in columns:
            cells.append(_fmt(getattr(summary, phase).get(name, "")))
        table.add_row(*cells)
    return table


def print_summary(console: Console, history: History) -> None:
    console.print(summary_table(history))
