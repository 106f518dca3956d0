"""What a finished run leaves behind: history.json, final.npz, metrics.png, run.json and
report.html, and the lines that say where they went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..core import ArrayRecord
from ..server import History
from ._html_report import REPORT_FILE, write_html_report
from ._output import remove_stale_outputs
from ._plot import plot_history
from ._summary import print_summary

__all__ = ["report", "write_outputs"]


def write_outputs(
    output: Path,
    history: History,
    arrays: ArrayRecord | None,
    run_info: dict[str, Any],
    title: str,
) -> list[Path]:
    """Write the run's files into ``output`` (checked by ``check_output`` beforehand);
    return the paths written. ``title`` heads ``metrics.png``."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    history.save(output / "history.json")
    written.append(output / "history.json")
    if arrays is not None:
        arrays_by_name: dict[str, Any] = {name: np.asarray(a) for name, a in arrays.items()}
        np.savez(output / "final.npz", **arrays_by_name)
        written.append(output / "final.npz")
    if plot_history(history, output / "metrics.png", title):
        written.append(output / "metrics.png")
    (output / "run.json").write_text(json.dumps(run_info, indent=2, default=str) + "\n")
    written.append(output / "run.json")
    remove_stale_outputs(output, [*written, output / REPORT_FILE])
    # Last: the report is made of the files above, and of none an earlier run left.
    written.append(write_html_report(output))
    return written


def report(console: Console, history: History, written: list[Path], seconds: float | None) -> None:
    """Print the summary table, the time taken (if given) and the files written."""
    if history.rounds:
        print_summary(console, history)
    took = "" if seconds is None else f"finished in {seconds:.1f} s; "
    console.print(f"{took}wrote:", markup=False, highlight=False, soft_wrap=True)
    for path in written:
        console.print(f"  {path}", markup=False, highlight=False, soft_wrap=True)
