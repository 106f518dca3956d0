"""``report.html``: a run's outputs as one self-contained page, and ``corolla report RUN``.

The page is built from what the run left in its output directory (``run.json``,
``history.json``, ``final.npz``): the run's facts, its final metrics, the plot of every
metric per round (a PNG inside the page), the per-round table, the run config and the
final arrays' names, types and shapes. Nothing is loaded from elsewhere: the page opens
as it is, offline, mailed or attached to an MLflow run.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import io
import json
import webbrowser
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..core import ConfigError
from ..server import History, RoundSummary
from ._plot import PHASES, history_figure

__all__ = ["REPORT_FILE", "add_report_parser", "write_html_report"]

REPORT_FILE = "report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.key, th.key { text-align: left; }
.wide { overflow-x: auto; } img { max-width: 100%; }
footer { margin-top: 2em; color: #777; font-size: 0.8em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping | list):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


def _key_value_table(rows: Iterable[tuple[str, Any]], table_id: str) -> str:
    body = "".join(
        f'<tr><td class="key">{_e(k)}</td><td class="key">{_e(_fmt(v))}</td></tr>' for k, v in rows
    )
    return f'<table id="{table_id}"><tbody>{body}</tbody></table>'


def _columns(history: History) -> list[tuple[str, str]]:
    """``(phase, metric)`` of every metric any round holds, sorted by phase then name."""
    seen = {(p, name) for s in history.rounds for p in PHASES for name in getattr(s, p)}
    return sorted(seen, key=lambda column: (PHASES.index(column[0]), column[1]))


def _rounds_table(history: History) -> str:
    columns = _columns(history)
    fixed = ["round", "train ok/failed", "evaluate ok/failed", "seconds"]
    head = "".join(f"<th>{_e(h)}</th>" for h in fixed) + "".join(
        f"<th>{_e(phase)}<br>{_e(name)}</th>" for phase, name in columns
    )

    def row(s: RoundSummary) -> str:
        cells = [
            s.round,
            f"{s.train_replies}/{s.train_failures}",
            f"{s.evaluate_replies}/{s.evaluate_failures}",
            f"{s.seconds:.3f}",
            *(_fmt(getattr(s, phase).get(name, "")) for phase, name in columns),
        ]
        return "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"

    body = "".join(row(s) for s in history.rounds)
    return (
        f'<div class="wide"><table id="rounds"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _final_metrics(history: History) -> list[tuple[str, Any]]:
    """The last value of each metric, named ``phase/metric``."""
    last: dict[str, Any] = {}
    for summary in history.rounds:
        for phase, name in _columns(history):
            values: dict[str, Any] = getattr(summary, phase)
            if name in values:
                last[f"{phase}/{name}"] = values[name]
    return sorted(last.items())


def _plot(run: Path, history: History, title: str) -> str:
    """The run's ``metrics.png`` inside the page (drawn again if missing)."""
    if (run / "metrics.png").is_file():
        png = (run / "metrics.png").read_bytes()
    else:
        figure = history_figure(history, title)
        if figure is None:
            return "<p>No numeric metrics to plot.</p>"
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        png = buffer.getvalue()
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(title)}: metrics per round" src="data:image/png;base64,{data}">'


def _arrays_table(path: Path) -> str:
    if not path.is_file():
        return "<p>The run left no final arrays.</p>"
    rows = []
    try:
        with np.load(path) as arrays:
            for name in arrays.files:
                array = arrays[name]
                shape = "\u00d7".join(str(d) for d in array.shape) or "scalar"
                rows.append(
                    f'<tr><td class="key">{_e(name)}</td><td class="key">{_e(array.dtype)}</td>'
                    f"<td>{_e(shape)}</td><td>{array.size}</td></tr>"
                )
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    head = '<tr><th class="key">name</th><th class="key">dtype</th><th>shape</th><th>size</th></tr>'
    return f'<table id="arrays"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


#: How the facts of ``run.json`` are named on the page (others keep their key).
_LABELS = {"app_dir": "app directory", "run_id": "run id", "startup_s": "startup"}
_SECONDS = ("startup_s", "total_s")


def _facts(info: Mapping[str, Any], history: History) -> list[tuple[str, Any]]:
    """The run's facts from ``run.json`` (but its config, which has a table of its own),
    seconds as such, the duration and the rounds last."""
    facts = []
    for key, value in info.items():
        if key in ("run_config", "total_s") or value is None:
            continue
        if key in _SECONDS and isinstance(value, int | float):
            value = f"{value:.1f} s"
        facts.append((_LABELS.get(key, key), value))
    if isinstance(info.get("total_s"), int | float):
        facts.append(("duration", f"{info['total_s']:.1f} s"))
    facts.append(("rounds", len([s for s in history.rounds if s.round > 0])))
    return facts


def _title(info: Mapping[str, Any]) -> str:
    app = info.get("app", "run")
    if "run_id" in info:
        return f"{app}: run {info['run_id']}"
    return f"{app}: simulation"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object")
    return data


def write_html_report(run: Path) -> Path:
    """Write ``run/report.html`` from the outputs in ``run``; return its path.

    Raises
    ------
    ConfigError
        If ``run`` is not a run's output directory (no ``history.json``) or its files
        cannot be read.
    """
    if not (run / "history.json").is_file():
        raise ConfigError(
            f"{run} is not a run's output directory (no history.json): give the --output "
            "of `corolla run`, `attach` or `pull`"
        )
    history = History.from_dict(_read_json(run / "history.json"))
    info = _read_json(run / "run.json") if (run / "run.json").is_file() else {}
    title = _title(info)
    config = info.get("run_config")
    sections = [
        f"<h1>{_e(title)}</h1>",
        "<h2>Run</h2>",
        _key_value_table(_facts(info, history), "facts"),
        "<h2>Final metrics</h2>",
        _key_value_table(_final_metrics(history), "final-metrics"),
        "<h2>Metrics per round</h2>",
        _plot(run, history, title),
        _rounds_table(history),
        "<h2>Run config</h2>",
        _key_value_table(sorted(config.items()) if isinstance(config, dict) else [], "config"),
        "<h2>Final arrays</h2>",
        _arrays_table(run / "final.npz"),
        f"<footer>Written by Corolla on {datetime.datetime.now():%Y-%m-%d %H:%M} from "
        f"{_e(run.resolve())}.</footer>",
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )
    path = run / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path


def add_report_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="write a run's HTML report",
        description=(
            "Write report.html into a run's output directory (the --output of `corolla "
            "run`, `attach` or `pull`): one self-contained page with the run's facts, plots, "
            "per-round metrics and config. Prints its path."
        ),
    )
    parser.add_argument("run", type=Path, metavar="RUN", help="the run's output directory")
    parser.add_argument("--open", action="store_true", help="open the report in a browser")
    parser.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace, console: Console) -> int:
    path = write_html_report(args.run)
    console.print(str(path), markup=False, highlight=False, soft_wrap=True)
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return 0
