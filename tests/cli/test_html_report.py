"""``report.html``: one self-contained page per run, with a row per round and every
metric; ``corolla report RUN`` writes it again."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from corolla.cli._html_report import write_html_report
from corolla.cli._main import main
from corolla.cli._report import write_outputs
from corolla.core import ArrayRecord, ConfigError
from corolla.server import History


class _Page(HTMLParser):
    """The tags, resource references and table rows of a page; fails on a tag closed
    that was not open."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.references: list[str] = []
        self.rows: dict[str, int] = {}
        self.table: str | None = None
        self.section = ""
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("br", "meta", "img", "link"):
            self.open.append(tag)
        values = dict(attrs)
        for name in ("src", "href", "srcset", "data", "action"):
            if values.get(name):
                self.references.append(str(values[name]))
        if tag == "table":
            self.table = values.get("id")
        if tag == "tbody":
            self.section = "body"
        if tag == "tr" and self.section == "body" and self.table:
            self.rows[self.table] = self.rows.get(self.table, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        if tag == "tbody":
            self.section = ""

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.open == []
    return page


def _history(rounds: int) -> History:
    history = History()
    history.record(0, "server", {"accuracy": 0.1})
    for number in range(1, rounds + 1):
        history.record(number, "train", {"train-loss": 1 / number, "num-examples": 640})
        history.record(number, "evaluate", {"accuracy": 0.5, "<b>odd name</b>": 1})
        history.record(number, "server", {"accuracy": 0.6 + number / 100, "loss": 0.7})
    return history


def test_the_report_is_one_page_with_a_row_per_round_and_every_metric(tmp_path):
    history = _history(5)
    arrays = ArrayRecord({"w": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.float32)})
    info = {"app": "demo", "nodes": 4, "total_s": 3.25, "run_config": {"lr": 0.5, "mode": "x"}}

    written = write_outputs(tmp_path, history, arrays, info, "demo")

    path = tmp_path / "report.html"
    assert path in written
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "http://" not in text and "https://" not in text
    page = _parse(path)
    assert page.references and all(r.startswith("data:image/png;base64,") for r in page.references)
    assert page.rows["rounds"] == 6  # rounds 0..5
    words = " ".join(page.text)
    for name in ("train-loss", "num-examples", "accuracy", "loss", "<b>odd name</b>"):
        assert name in words  # escaped in the page, read back as text
    assert "<b>odd name</b>" not in text
    assert page.rows["config"] == 2 and "mode" in words
    assert page.rows["arrays"] == 2 and "3\u00d72" in words
    assert "3.2 s" in words  # the duration


def test_corolla_report_writes_the_report_again_and_prints_its_path(tmp_path, capsys):
    write_outputs(tmp_path, _history(2), None, {"app": "demo", "run_id": 7}, "demo")
    (tmp_path / "report.html").unlink()

    status = main(["report", str(tmp_path)])

    assert status == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
    page = _parse(tmp_path / "report.html")
    assert page.rows["rounds"] == 3
    assert "demo: run 7" in " ".join(page.text)


def test_a_directory_without_a_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a run's output directory"):
        write_html_report(tmp_path)

    (tmp_path / "history.json").write_text(json.dumps({"rounds": []}))
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="does not hold a JSON object"):
        write_html_report(tmp_path)
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "final.npz").write_text("not arrays")
    with pytest.raises(ConfigError, match=r"cannot read .*final\.npz"):
        write_html_report(tmp_path)
