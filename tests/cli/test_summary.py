"""The summary table fits 80 columns and says which rounds it leaves out."""

from __future__ import annotations

import io

from rich.console import Console

from corolla.cli._summary import print_summary, summary_tables
from corolla.server import History

METRICS = [f"metric-{i:02d}" for i in range(9)]


def _history(rounds: int, metrics: list[str] = METRICS) -> History:
    history = History()
    for number in range(rounds + 1):
        history.round(number).train_replies = 10
        for phase in ("train", "evaluate", "server"):
            history.record(number, phase, {name: 1.0 / (number + 1) for name in metrics})
    return history


def _printed(history: History, width: int = 80) -> str:
    out = io.StringIO()
    print_summary(Console(file=out, width=width), history)
    return out.getvalue()


def test_many_metrics_fit_80_columns_over_several_tables() -> None:
    text = _printed(_history(3))

    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Run summary (1/" in text
    for name in METRICS:  # every metric is shown, in some table
        assert name in text


def test_left_out_rounds_are_marked() -> None:
    history = _history(97)  # rounds 0..97

    text = _printed(history)

    assert "rounds 1\u201387 not shown (all are in history.json)" in text
    assert "\u2026" in text  # the gap row
    tables = summary_tables(history, 80)
    assert all(table.row_count == 12 for table in tables)  # round 0, the gap, rounds 88-97


def test_a_short_run_with_few_metrics_is_one_table_of_every_round() -> None:
    history = _history(3, ["loss"])

    (table,) = summary_tables(history, 80)

    assert table.row_count == 4
    assert "not shown" not in _printed(history)
