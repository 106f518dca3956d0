"""The dashboard in a real browser (Debian's Chromium, driven by Playwright), served by a
real ``corolla link --auth --dashboard-address`` with two real nodes.

One link serves every check of the module. Every page a check opens records its
JavaScript errors, and the last check asserts that none logged any.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from corolla.runtime import ControlClient
from corolla.runtime.link import bootstrap_admin
from corolla.transport import run_pb2
from corolla.trust import NodeKey

from ..runtime.test_e2e import (
    APP,
    Processes,
    _free_port,
    _start_link,
    _start_nodes,
    _wait_for_nodes,
)
from .browser import BROWSER_TEST, CHROMIUM

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = BROWSER_TEST

PASSWORDS = {"alice": "alice-password", "olga": "operator-password", "vic": "viewer-password"}
ROUNDS = 4
FULL = {"fraction-train": 1.0, "fraction-evaluate": 1.0, "local-epochs": 1}
WAIT_MS = 30_000


class Federation:
    """The link, its dashboard's URL, an admin's Control client, the browser, and the
    JavaScript errors of every page opened."""

    def __init__(self, url: str, client: ControlClient, browser: Any) -> None:
        self.url = url
        self.client = client
        self.browser = browser
        self.errors: list[str] = []
        self.runs: dict[str, int] = {}

    def page(self, account: str) -> Any:
        """A new browser page logged in as ``account``."""
        context = self.browser.new_context()
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{account}: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"{account}: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.goto(self.url)
        page.fill("input[name=name]", account)
        page.fill("input[name=password]", PASSWORDS[account])
        page.click("form.login button[type=submit]")
        page.wait_for_selector("#who >> text=log out", timeout=WAIT_MS)
        return page


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    tmp_path = tmp_path_factory.mktemp("browser")
    processes = Processes(tmp_path)
    bootstrap_admin(tmp_path / "link", "alice", PASSWORDS["alice"])
    keys = [NodeKey.load_or_create(tmp_path / f"node{i}")[0].public_text for i in (0, 1)]
    port = _free_port()
    try:
        fleet, control = _start_link(
            processes, tmp_path, "--auth", "--dashboard-address", f"127.0.0.1:{port}"
        )
        token = _login(control, processes)
        with ControlClient(f"127.0.0.1:{control}", token=token) as client:
            client.accounts.add_account("olga", "operator", PASSWORDS["olga"])
            client.accounts.add_account("vic", "viewer", PASSWORDS["vic"])
            for i, key in enumerate(keys):
                client.accounts.add_node_key(key, name=f"site-{i}")
            _start_nodes(processes, fleet, tmp_path, 2)
            _wait_for_nodes(client, 2, processes)
            with playwright.sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM)
                try:
                    yield Federation(f"http://127.0.0.1:{port}/", client, browser)
                finally:
                    browser.close()
    finally:
        processes.stop_all()


def _login(control: int, processes: Processes) -> str:
    """alice's token, once the link answers."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with ControlClient(f"127.0.0.1:{control}") as client:
                return client.accounts.login("alice", PASSWORDS["alice"]).token
        except ConnectionError:
            dead = [c.args for c in processes.children if c.poll() is not None]
            assert not dead and time.monotonic() < deadline, f"the link did not start: {dead}"
            time.sleep(0.1)


def _wait_until_running(client: ControlClient, run_id: int) -> None:
    deadline = time.monotonic() + 60
    while client.get_run(run_id).status != run_pb2.RUN_STATUS_RUNNING:
        assert time.monotonic() < deadline, f"run {run_id} did not start"
        time.sleep(0.1)


def test_the_runs_page_shows_a_run_appear_and_progress_live(federation):
    page = federation.page("olga")
    page.wait_for_selector("table.runs", timeout=WAIT_MS)
    page.evaluate("window.notReloaded = true")

    run_id = federation.client.submit(APP, {"num-server-rounds": ROUNDS, **FULL}).run_id
    federation.runs["finished"] = run_id
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    row.wait_for(timeout=WAIT_MS)
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen.add((row.locator(".status").inner_text(), row.locator("td.rounds").inner_text()))
        if ("finished", f"{ROUNDS} / {ROUNDS}") in seen:
            break
        page.wait_for_timeout(50)

    assert ("finished", f"{ROUNDS} / {ROUNDS}") in seen
    assert any(status != "finished" for status, _ in seen), seen  # seen before it ended
    assert page.evaluate("window.notReloaded") is True
    assert "loss" in row.locator("td.metrics").inner_text()


def test_the_run_page_has_one_point_per_finished_round(federation):
    run_id = federation.runs["finished"]
    page = federation.page("vic")

    page.goto(f"{federation.url}#/runs/{run_id}")
    page.wait_for_selector("svg.chart", timeout=WAIT_MS)
    charts = page.locator("svg.chart")
    history = _history(page, federation.url, run_id)

    titles = charts.evaluate_all("charts => charts.map(c => c.dataset.title)")
    assert "train train-loss" in titles
    for index, title in enumerate(titles):
        phase, name = title.split(" ", 1)
        expected = [str(r["round"]) for r in history["rounds"] if name in r[phase]]
        dots = charts.nth(index).locator("circle.dot")
        assert dots.evaluate_all("dots => dots.map(d => d.dataset.x)") == expected, title
    # Every round that trained is a point of the training curves: one per finished round.
    trained = charts.nth(titles.index("train train-loss")).locator("circle.dot")
    assert trained.evaluate_all("dots => dots.map(d => d.dataset.x)") == [
        str(r) for r in range(1, ROUNDS + 1)
    ]
    assert page.locator("table.rounds-table tbody tr").count() == len(history["rounds"])
    assert "run finished" in page.locator(".events").inner_text()


def _history(page: Any, url: str, run_id: int) -> dict[str, Any]:
    """The run's history.json, downloaded by the logged-in page."""
    answer = page.request.get(f"{url}api/runs/{run_id}/history.json")
    assert answer.ok, answer.text()
    history: dict[str, Any] = json.loads(answer.body())
    return history


def test_the_participation_map_matches_the_history(federation):
    run_id = federation.runs["finished"]
    page = federation.page("vic")
    page.goto(f"{federation.url}#/runs/{run_id}")
    page.wait_for_selector("table.participation", timeout=WAIT_MS)

    history = _history(page, federation.url, run_id)
    cells = page.locator("td.cell").evaluate_all(
        "cells => cells.map(c => [c.dataset.round, +c.dataset.ok, +c.dataset.failed])"
    )

    assert page.locator("table.participation tbody tr").count() == 2  # one row per node
    for summary in history["rounds"]:
        of_round = [c for c in cells if c[0] == str(summary["round"])]
        assert sum(c[1] for c in of_round) == (
            summary["train_replies"] + summary["evaluate_replies"]
        )
        assert sum(c[2] for c in of_round) == (
            summary["train_failures"] + summary["evaluate_failures"]
        )


def test_stop_is_refused_to_a_viewer_and_works_for_an_operator(federation):
    client = federation.client
    run_id = client.submit(APP, {"num-server-rounds": 1000, **FULL}).run_id
    _wait_until_running(client, run_id)
    viewer = federation.page("vic")
    viewer.goto(f"{federation.url}#/runs/{run_id}")
    viewer.wait_for_selector("h1 .status", timeout=WAIT_MS)

    refused = viewer.request.post(f"{federation.url}api/runs/{run_id}/stop").status
    no_button = viewer.locator("#stop").count()
    operator = federation.page("olga")
    operator.on("dialog", lambda dialog: dialog.accept())
    operator.goto(f"{federation.url}#/runs/{run_id}")
    operator.click("#stop", timeout=WAIT_MS)
    operator.wait_for_selector("h1 .status.stopped", timeout=WAIT_MS)

    assert (refused, no_button) == (403, 0)
    assert client.get_run(run_id).status == run_pb2.RUN_STATUS_STOPPED
    viewer.wait_for_selector("h1 .status.stopped", timeout=WAIT_MS)  # seen live


def test_no_page_logs_a_javascript_error(federation):
    page = federation.page("olga")
    finished = federation.runs["finished"]
    for route, ready in [
        ("#/runs", "table.runs"),
        (f"#/runs/{finished}", "svg.chart"),
        ("#/nodes", "table.nodes tbody tr"),
        (f"#/compare?runs={finished},{finished}", "table.compare"),
        ("#/federation", "svg.chart"),
    ]:
        page.goto(f"{federation.url}{route}")
        page.wait_for_selector(ready, timeout=WAIT_MS)
        shown = page.inner_text("main")
        assert not {"null", "undefined", "NaN"} & set(shown.split()), (route, shown)
    page.wait_for_timeout(1500)  # a live update or two

    assert page.locator("table.nodes").count() == 0  # on the last page now
    assert federation.errors == []
