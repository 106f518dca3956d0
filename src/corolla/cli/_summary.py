"""The summary table ``corolla run`` prints at the end: metrics per round.

It fits the terminal: the metrics are split over as many tables as needed, each
repeating the round column, and a long run shows its first round and its last ones, with
a row that says which rounds it leaves out (all of them are in ``history.json``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..server import History, RoundSummary
from ._plot import numeric_series

__all__ = ["print_summary", "summary_tables"]

#: Rounds a table shows at most, the left-out ones marked by a row.
MAX_ROWS = 12
_GAP = "\u2026"  # an ellipsis
_DASH = "\u2013"  # the en dash of a range of rounds


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _shown_rounds(history: History, max_rows: int) -> tuple[list[RoundSummary], str | None]:
    """The rounds to show, and what the gap row says (None if all are shown)."""
    rounds = history.rounds
    if len(rounds) <= max_rows:
        return rounds, None
    tail = max(max_rows - 2, 1)  # the first round, the gap row, then the last ones
    left_out = rounds[1:-tail]
    first, last = left_out[0].round, left_out[-1].round
    said = f"round {first}" if first == last else f"rounds {first}{_DASH}{last}"
    return [rounds[0], *rounds[-tail:]], f"{said} not shown (all are in history.json)"


def _width(header: str, cells: list[str]) -> int:
    return max([*(len(line) for line in header.splitlines()), *(len(c) for c in cells)])


def summary_tables(history: History, width: int = 80, max_rows: int = MAX_ROWS) -> list[Table]:
    """Tables of the metrics per round that each fit ``width`` columns."""
    shown, gap = _shown_rounds(history, max_rows)
    fixed: list[tuple[str, list[str]]] = [
        ("round", [str(s.round) for s in shown]),
        ("nodes\nok/failed", [f"{s.train_replies}/{s.train_failures}" for s in shown]),
    ]
    metrics = [
        (f"{phase}\n{name}", [_fmt(getattr(s, phase).get(name, "")) for s in shown])
        for phase, name in sorted(numeric_series(history))
    ]
    # A rich table's width: each column plus its padding (2), plus a border per column
    # and one at the end.
    base = sum(_width(h, c) + 3 for h, c in fixed) + 1
    groups: list[list[tuple[str, list[str]]]] = [[]]
    used = base
    for column in metrics:
        needed = _width(*column) + 3
        if groups[-1] and used + needed > width:
            groups.append([])
            used = base
        groups[-1].append(column)
        used += needed
    tables = []
    for number, group in enumerate(groups, start=1):
        title = "Run summary" if len(groups) == 1 else f"Run summary ({number}/{len(groups)})"
        table = Table(title=title, caption=gap)
        for header, _ in fixed + group:
            # Text: a metric's name is the app's, not rich markup.
            table.add_column(Text(header), justify="right", no_wrap=True)
        columns = [cells for _, cells in fixed + group]
        for row, _ in enumerate(shown):
            if row == 1 and gap is not None:
                table.add_row(*[_GAP] * len(columns))
            table.add_row(*[Text(cells[row]) for cells in columns])
        tables.append(table)
    return tables


def print_summary(console: Console, history: History) -> None:
    """Print :func:`summary_tables` at the console's width."""
    for table in summary_tables(history, console.width):
        console.print(table)
