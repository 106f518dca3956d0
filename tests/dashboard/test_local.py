"""The dashboard over local runs (``corolla dashboard``): a real server reading the
directories two real ``corolla run`` simulations wrote, over HTTP."""

from __future__ import annotations

import http.client
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from rich.console import Console

from corolla.cli._main import build_parser
from corolla.cli._run import run_command
from corolla.core import ConfigError
from corolla.dashboard import LocalDashboard

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "quickstart-numpy"

#: The two runs: (directory name, rounds, learning rate).
RUNS = (("quickstart-a", 2, 0.5), ("quickstart-b", 3, 0.1))


def write_runs(directory: Path) -> Path:
    """Two real simulations of the quickstart into ``directory`` (the second newer),
    then, older, a run whose run.json is corrupt and one whose history.json is; returns
    ``directory``."""
    for name, rounds, rate in RUNS:
        config = [f"num-server-rounds={rounds}", f"learning-rate={rate}", "local-epochs=1"]
        output = ["--output", str(directory / name), "--run-config", *config]
        args = build_parser().parse_args(
            ["run", str(APP), "--nodes", "3", "--backend", "inline", "--quiet", *output]
        )
        assert run_command(args, Console(file=io.StringIO())) == 0
    newest = os.stat(directory / RUNS[-1][0] / "run.json").st_mtime
    os.utime(directory / RUNS[0][0] / "run.json", (newest - 60, newest - 60))
    (directory / "broken-run").mkdir()
    (directory / "broken-run" / "run.json").write_text('{"app": "quickstart-numpy",')
    (directory / "broken-history").mkdir()
    (directory / "broken-history" / "run.json").write_text('{"app": "quickstart-numpy"}')
    (directory / "broken-history" / "history.json").write_text('{"rounds": 3}')
    (directory / "not-a-run").mkdir()  # no run.json: not listed
    for name in ("broken-run", "broken-history"):
        os.utime(directory / name / "run.json", (newest - 120, newest - 120))
    return directory


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs of :func:`write_runs`, and a link to a run outside the directory."""
    runs = write_runs(tmp_path_factory.mktemp("runs") / "runs")
    secret = runs.parent / "secret"
    secret.mkdir()
    (secret / "run.json").write_text('{"app": "secret"}')
    (secret / "history.json").write_text('{"rounds": []}')
    (runs / "outside").symlink_to(secret)
    os.utime(secret / "run.json", (0, 0))  # the oldest
    return runs


@pytest.fixture(scope="module")
def client(runs_dir: Path) -> Iterator[httpx.Client]:
    with (
        LocalDashboard(runs_dir, "127.0.0.1:0") as dashboard,
        httpx.Client(base_url=dashboard.url, timeout=10) as http,
    ):
        yield http


def _get(client: httpx.Client, path: str) -> dict:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_runs_are_listed_newest_first_with_their_facts_and_final_metrics(client, runs_dir):
    listed = _get(client, "/api/runs")

    good = [r for r in listed["runs"] if r["status"] == "finished"]
    assert [r["run_id"] for r in good] == ["quickstart-b", "quickstart-a"]
    assert listed["total"] == 5  # and the three unreadable ones; not-a-run is left out
    newest = good[0]
    info = json.loads((runs_dir / "quickstart-b" / "run.json").read_text())
    history = json.loads((runs_dir / "quickstart-b" / "history.json").read_text())
    assert (newest["app"], newest["nodes"], newest["backend"]) == ("quickstart-numpy", 3, "inline")
    assert (newest["rounds_done"], newest["num_rounds"]) == (3, 3)
    assert newest["duration"] == pytest.approx(info["total_s"])
    assert newest["metrics"]["train"] == history["rounds"][-1]["train"]


def test_the_runs_can_be_filtered_sorted_and_paged(client):
    by_rounds = _get(client, "/api/runs?status=finished&sort=rounds_done&desc=0")
    text = _get(client, "/api/runs?q=broken")
    page = _get(client, "/api/runs?limit=1&offset=1")
    by_nodes = _get(client, "/api/runs?sort=nodes")

    assert [r["run_id"] for r in by_rounds["runs"]] == ["quickstart-a", "quickstart-b"]
    assert [r["nodes"] for r in by_nodes["runs"]] == [3, 3, None, None, None]  # unknown last
    assert sorted(r["run_id"] for r in text["runs"]) == ["broken-history", "broken-run"]
    assert (len(page["runs"]), page["total"]) == (1, 5)
    assert client.get("/api/runs?sort=secret").status_code == 400


def test_a_run_has_its_rounds_config_and_downloads(client, runs_dir):
    run = _get(client, "/api/runs/quickstart-a")
    history = client.get("/api/runs/quickstart-a/history.json")
    arrays = client.get("/api/runs/quickstart-a/arrays.npz")
    report = client.get("/api/runs/quickstart-a/report.html")

    written = json.loads((runs_dir / "quickstart-a" / "history.json").read_text())
    assert run["rounds"] == written["rounds"]
    assert [r["round"] for r in run["rounds"]] == [0, 1, 2]
    assert run["config"]["learning-rate"] == 0.5
    assert run["config"]["num-server-rounds"] == 2
    assert json.loads(history.content) == written
    assert "attachment" in history.headers["content-disposition"]
    assert run["report"] is True
    assert report.text == (runs_dir / "quickstart-a" / "report.html").read_text()
    assert "default-src 'none'" in report.headers["content-security-policy"]
    with (
        np.load(io.BytesIO(arrays.content)) as served,
        np.load(runs_dir / "quickstart-a" / "final.npz") as stored,
    ):
        assert served.files == stored.files
        assert {a["name"] for a in run["arrays"]} == set(stored.files)
        for name in stored.files:
            np.testing.assert_array_equal(served[name], stored[name])


def test_compare_overlays_the_runs_and_names_the_config_keys_that_differ(client):
    compared = _get(client, "/api/compare?runs=quickstart-a,quickstart-b")

    assert [r["run_id"] for r in compared["runs"]] == ["quickstart-a", "quickstart-b"]
    assert [len(r["rounds"]) for r in compared["runs"]] == [3, 4]
    assert compared["differs"] == ["learning-rate", "num-server-rounds"]


def test_a_corrupt_run_is_listed_with_the_reason_it_cannot_be_read(client):
    listed = {r["run_id"]: r for r in _get(client, "/api/runs?status=unreadable")["runs"]}
    page = _get(client, "/api/runs/broken-run")

    assert set(listed) == {"broken-run", "broken-history", "outside"}
    assert "run.json is not valid JSON" in listed["broken-run"]["error"]
    assert "history.json is not" in listed["broken-history"]["error"]
    assert listed["broken-history"]["app"] == "quickstart-numpy"
    assert (page["status"], page["rounds"], page["config"]) == ("unreadable", [], {})


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/..",
        "/api/runs/%2E%2E",
        "/api/runs/..%2F..%2Fsecret/history.json",
        "/api/runs/outside/history.json",
        "/api/runs/not-a-run",
        "/api/runs/.hidden",
        "/api/compare?runs=quickstart-a,..",
        "/api/compare?runs=quickstart-a,%2Ftmp%2Fsecret",
    ],
)
def test_a_run_id_that_is_a_path_or_not_a_run_is_refused(client, path):
    # Sent as is: httpx would resolve the dots before sending.
    url = httpx.URL(str(client.base_url))
    connection = http.client.HTTPConnection(url.host, url.port, timeout=10)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        status, body = answer.status, answer.read().decode()
    finally:
        connection.close()

    assert status == 404, body
    assert '"rounds"' not in body
    assert json.loads(body)["error"].startswith(("no run", "no such page"))


def test_a_run_linked_from_outside_the_directory_is_listed_as_unreadable(client):
    listed = {r["run_id"]: r for r in _get(client, "/api/runs?status=unreadable")["runs"]}

    assert "links outside" in listed["outside"]["error"]
    assert listed["outside"]["app"] is None  # its run.json was not read


def test_a_page_that_needs_a_link_says_so(client):
    me = _get(client, "/api/me")
    nodes = client.get("/api/nodes")
    stop = client.post("/api/runs/quickstart-a/stop")

    assert (me["local"], me["may_stop"]) == (True, False)
    assert nodes.status_code == stop.status_code == 404
    assert "needs a link" in nodes.json()["error"]


def test_a_run_that_finishes_while_the_dashboard_runs_is_listed(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    with (
        LocalDashboard(runs, "127.0.0.1:0") as dashboard,
        httpx.Client(base_url=dashboard.url, timeout=10) as http,
    ):
        before = _get(http, "/api/runs")["total"]
        (runs / "later").mkdir()
        (runs / "later" / "run.json").write_text('{"app": "x", "total_s": 1.5}')
        (runs / "later" / "history.json").write_text('{"rounds": [{"round": 1}]}')
        after = _get(http, "/api/runs")["runs"]

    assert before == 0
    assert [(r["run_id"], r["status"], r["rounds_done"]) for r in after] == [
        ("later", "finished", 1)
    ]


def test_a_missing_runs_directory_or_one_runs_directory_is_refused(tmp_path, runs_dir):
    with pytest.raises(ConfigError, match="does not exist"):
        LocalDashboard(tmp_path / "nowhere", "127.0.0.1:0")
    with pytest.raises(ConfigError, match="one run's output directory"):
        LocalDashboard(runs_dir / "quickstart-a", "127.0.0.1:0")


def test_an_address_beyond_loopback_needs_insecure(runs_dir):
    with pytest.raises(ConfigError, match="--insecure"):
        LocalDashboard(runs_dir, "0.0.0.0:0")
    LocalDashboard(runs_dir, "0.0.0.0:0", insecure=True)  # checked, not started
