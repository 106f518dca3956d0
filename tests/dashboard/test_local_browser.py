"""The dashboard over local runs in a real browser (Debian's Chromium, driven by
Playwright): the runs two real simulations wrote, and pages that need a link."""

from __future__ import annotations

import json

import pytest

from corolla.dashboard import LocalDashboard

from .browser import BROWSER_TEST, CHROMIUM
from .test_local import write_runs

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = BROWSER_TEST

WAIT_MS = 30_000


def test_the_pages_show_the_local_runs_without_a_javascript_error(tmp_path):
    runs = write_runs(tmp_path / "runs")
    errors: list[str] = []
    with (
        LocalDashboard(runs, "127.0.0.1:0") as dashboard,
        playwright.sync_playwright() as driver,
    ):
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: errors.append(msg.text) if msg.type == "error" else None,
            )
            page.goto(dashboard.url)
            page.wait_for_selector('tr[data-run-id="quickstart-b"]', timeout=WAIT_MS)
            listed = page.locator("table.runs tbody tr").evaluate_all(
                "rows => rows.map(r => [r.dataset.runId, r.querySelector('.status').innerText])"
            )
            rounds = page.locator('tr[data-run-id="quickstart-b"] td.rounds').inner_text()
            nav = page.locator("nav a:visible").all_inner_texts()

            page.goto(f"{dashboard.url}#/runs/quickstart-b")
            page.wait_for_selector("svg.chart", timeout=WAIT_MS)
            history = json.loads((runs / "quickstart-b" / "history.json").read_text())
            charts = page.locator("svg.chart")
            titles = charts.evaluate_all("charts => charts.map(c => c.dataset.title)")
            points = {
                title: charts.nth(i)
                .locator("circle.dot")
                .evaluate_all("dots => dots.map(d => d.dataset.x)")
                for i, title in enumerate(titles)
            }
            table_rows = page.locator("table.rounds-table tbody tr").count()
            downloads = page.locator(".actions a").all_inner_texts()

            shown = {}
            for route, ready in [
                ("#/runs", 'tr[data-run-id="broken-run"]'),
                ("#/runs/broken-run", "p.error"),
                ("#/compare?runs=quickstart-a,quickstart-b", "table.compare"),
                ("#/nodes", ".needs-link"),
                ("#/federation", ".needs-link"),
            ]:
                page.goto(f"{dashboard.url}{route}")
                page.wait_for_selector(ready, timeout=WAIT_MS)
                shown[route] = page.inner_text("main")
            page.wait_for_timeout(500)
        finally:
            browser.close()

    assert listed == [
        ["quickstart-b", "finished"],
        ["quickstart-a", "finished"],
        ["broken-history", "unreadable"],
        ["broken-run", "unreadable"],
    ]
    assert rounds == "3 / 3"
    assert nav == ["Runs", "Compare"]
    assert "train train-loss" in titles
    for title, xs in points.items():
        phase, name = title.split(" ", 1)
        assert xs == [str(r["round"]) for r in history["rounds"] if name in r[phase]], title
    assert points["train train-loss"] == ["1", "2", "3"]  # one point per round
    assert table_rows == len(history["rounds"])
    assert downloads == ["history.json", "final.npz (2 arrays)", "report.html"]
    assert "run.json is not valid JSON" in shown["#/runs/broken-run"]
    assert "need a link" in shown["#/nodes"]
    for route, text in shown.items():
        assert not {"null", "undefined", "NaN"} & set(text.split()), (route, text)
    assert errors == []
