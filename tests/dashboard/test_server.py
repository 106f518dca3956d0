"""The dashboard of a real (in-process) link, over HTTP: its JSON endpoints, downloads,
login and roles."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from corolla.core import ConfigError, Error, ErrorCode, Event, Metadata, encode_array
from corolla.dashboard import Dashboard, DashboardStatus
from corolla.runtime import Link, LinkLimits
from corolla.state import RunStatus, StoredMessage
from corolla.trust import Role

CONTENT = "a" * 64


def _message(run_id: int, node: int, server_round: int) -> StoredMessage:
    return StoredMessage(
        Metadata(run_id, "", 0, node, "", str(server_round), "train", 60.0), content_hash=CONTENT
    )


def _reply(message: StoredMessage, error: Error | None = None) -> StoredMessage:
    md = message.metadata
    metadata = Metadata(
        md.run_id, "", md.dst_node_id, 0, md.message_id, md.group_id, md.message_type, md.ttl
    )
    if error is not None:
        return StoredMessage(metadata, error=error)
    return StoredMessage(metadata, content_hash="b" * 64)


def _fill(link: Link) -> tuple[int, list[int]]:
    """A run of 3 nodes and 2 rounds on ``link``'s state; node 2 fails round 2."""
    state = link.state
    nodes = sorted(state.register_node(heartbeat_interval=3600).node_id for _ in range(3))
    run_id = state.create_run(CONTENT, {"lr": 0.1, "num-server-rounds": 2}).run_id
    state.append_event(Event("run.submit", run_id, data={"app": "quickstart", "by": "ada"}))
    state.update_run_status(run_id, RunStatus.STARTING)
    state.update_run_status(run_id, RunStatus.RUNNING)
    for server_round in (1, 2):
        state.append_event(Event("round.start", run_id, server_round, data={"num_rounds": 2}))
        state.store_messages([_message(run_id, n, server_round) for n in nodes])
        sent = [m for n in nodes for m in state.fetch_messages(n)]
        failing = nodes[1] if server_round == 2 else None
        state.store_replies(
            [
                _reply(m, Error(ErrorCode.CLIENT_APP_RAISED, "Traceback:\nValueError: bad data"))
                if m.metadata.dst_node_id == failing
                else _reply(m)
                for m in sent
            ]
        )
        state.append_event(
            Event(
                "round.end",
                run_id,
                server_round,
                data={
                    "round": server_round,
                    "train": {"loss": 1.0 / server_round},
                    "server": {"accuracy": 0.5 + server_round / 10},
                    "train_replies": 3 - (failing is not None),
                    "train_failures": int(failing is not None),
                },
            )
        )
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    sha = link.blobs.put(encode_array(weights))
    state.append_event(
        Event("run.result", run_id, data={"arrays": [{"name": "w", "sha256": sha, "size": 1}]})
    )
    return run_id, nodes


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Link, Dashboard, int]]:
    directory = tmp_path_factory.mktemp("dashboard")
    with Link(
        directory / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        limits=LinkLimits(sweep_interval=0.05),
    ) as link:
        run_id, _ = _fill(link)
        with Dashboard(link, "127.0.0.1:0", sample_interval=0.05) as dashboard:
            yield link, dashboard, run_id


@pytest.fixture
def client(served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[1].url, timeout=10.0) as http:
        yield http


def test_the_page_and_its_scripts_are_served_from_the_package(client):
    page = client.get("/")
    script = client.get("/static/app.js")

    assert page.status_code == 200 and "/static/app.js" in page.text
    assert script.status_code == 200
    for text in (page.text, script.text, client.get("/static/charts.js").text):
        assert "https://" not in text and "cdn" not in text.lower()


def test_runs_list_the_app_submitter_rounds_and_final_metrics(client, served):
    run_id = served[2]

    runs = client.get("/api/runs", params={"q": "ADA"}).json()
    none = client.get("/api/runs", params={"status": "finished"}).json()

    assert runs["total"] == 1
    run = runs["runs"][0]
    assert (run["run_id"], run["status"], run["app"], run["by"]) == (
        str(run_id),
        "running",
        "quickstart",
        "ada",
    )
    assert (run["rounds_done"], run["num_rounds"]) == (2, 2)
    assert run["metrics"] == {"train": {"loss": 0.5}, "server": {"accuracy": 0.7}}
    assert none == {"runs": [], "total": 0}


def test_a_run_has_its_config_rounds_participation_and_events(client, served):
    run_id = served[2]

    run = client.get(f"/api/runs/{run_id}").json()
    participation = client.get(f"/api/runs/{run_id}/participation").json()
    events = client.get(f"/api/runs/{run_id}/events").json()["events"]

    assert run["config"] == {"lr": 0.1, "num-server-rounds": 2}
    assert [r["round"] for r in run["rounds"]] == [1, 2]
    assert run["arrays"] == [{"name": "w", "size": 1}]
    assert participation["rounds"] == ["1", "2"]
    assert [line[1] for line in participation["cells"]] == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    for server_round, data in enumerate(run["rounds"]):  # the map matches the history
        replied = sum(line[server_round][0] for line in participation["cells"])
        assert replied == data["train_replies"]
    assert events[0]["text"].endswith("run submitted: app quickstart")
    assert any("round 2 ended" in e["text"] for e in events)


def test_a_failed_cell_leads_to_the_nodes_error(client, served):
    run_id = served[2]
    band = client.get(f"/api/runs/{run_id}/participation").json()["bands"][1]

    failures = client.get(
        f"/api/runs/{run_id}/failures",
        params={"round": "2", "first": band["first"], "last": band["last"]},
    ).json()["failures"]

    assert [(f["node_id"], f["code"]) for f in failures] == [(band["first"], 1)]
    assert "ValueError: bad data" in failures[0]["reason"]


def test_the_history_and_final_arrays_download(client, served):
    run_id = served[2]

    history = client.get(f"/api/runs/{run_id}/history.json")
    arrays = client.get(f"/api/runs/{run_id}/arrays.npz")

    assert "attachment" in history.headers["content-disposition"]
    assert [r["round"] for r in json.loads(history.content)["rounds"]] == [1, 2]
    with np.load(io.BytesIO(arrays.content)) as loaded:
        np.testing.assert_array_equal(loaded["w"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_compare_marks_the_config_keys_that_differ(client, served):
    link, _, run_id = served
    other = link.state.create_run(CONTENT, {"lr": 0.2, "num-server-rounds": 2}).run_id

    compared = client.get("/api/compare", params={"runs": f"{run_id},{other}"}).json()

    assert [r["run_id"] for r in compared["runs"]] == [str(run_id), str(other)]
    assert compared["differs"] == ["lr"]


def test_nodes_and_federation_are_listed(client, served):
    nodes = client.get("/api/nodes").json()
    federation = client.get("/api/federation").json()

    assert nodes["total"] == 3
    assert {n["runs_served"] for n in nodes["nodes"]} == {1}
    assert sorted(n["errors"] for n in nodes["nodes"]) == [0, 0, 1]
    assert federation["totals"]["nodes_online"] == 3
    assert federation["samples"] and "to_nodes" in federation["samples"][-1]["bytes"]


def test_the_stream_says_when_the_state_changes(client, served):
    link, _, run_id = served

    with client.stream("GET", "/api/stream") as stream:
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        link.state.append_event(Event("log", run_id, data={"line": "hello"}))
        second = next(line for line in lines if line.startswith("data:"))

    assert json.loads(second[5:])["last_event"] == json.loads(first[5:])["last_event"] + 1


def test_bad_requests_get_an_error_that_says_why(client):
    assert client.get("/api/runs/12345").json() == {"error": "no run 12345"}
    assert client.get("/api/runs", params={"sort": "size"}).status_code == 400
    assert "unknown status" in client.get("/api/runs", params={"status": "x"}).json()["error"]
    assert client.get("/api/runs", params={"limit": "lots"}).status_code == 400
    assert client.get("/api/compare", params={"runs": "1,x"}).status_code == 400


def test_a_post_from_another_site_is_refused(client, served):
    refused = client.post(
        f"/api/runs/{served[2]}/stop", headers={"origin": "https://elsewhere.example"}
    )

    assert refused.status_code == 403
    assert "elsewhere.example" in refused.json()["error"]


def test_an_address_beyond_loopback_needs_certificates_or_insecure(served):
    with pytest.raises(ConfigError, match="--certificates DIR"):
        Dashboard(served[0], "0.0.0.0:0")


def test_a_busy_port_is_refused_naming_it(served):
    port = served[1].port

    with pytest.raises(ConfigError, match=f"cannot serve the dashboard on 127.0.0.1:{port}"):
        Dashboard(served[0], f"127.0.0.1:{port}").start()


@pytest.fixture(scope="module")
def guarded_link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Link, int]]:
    directory = tmp_path_factory.mktemp("guarded")
    with Link(
        directory / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        auth=True,
    ) as link:
        link.trust.add_account("olga", Role.OPERATOR, "operator-password")
        link.trust.add_account("vic", Role.VIEWER, "viewer-password")
        link.trust.add_account("tess", Role.VIEWER, "tester-password")
        run_id, _ = _fill(link)
        yield link, run_id


@pytest.fixture(scope="module")
def guarded(guarded_link: tuple[Link, int]) -> Iterator[tuple[Dashboard, int]]:
    link, run_id = guarded_link
    with Dashboard(link, "127.0.0.1:0") as dashboard:
        yield dashboard, run_id


def _audit(link: Link, kind: str) -> list[dict[str, Any]]:
    lines = (link.state_dir / "audit.log").read_text("utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_dashboard_logins_are_throttled_and_audited_with_the_link_s_other_logins(
    guarded, guarded_link
):
    # Arrange
    dashboard, _ = guarded
    link, _ = guarded_link

    # Act: wrong passwords for tess until the name is refused (the refusal lasts 1 s after
    # the fifth failure, doubling with each further one: a few more on a slow machine),
    # then the right one, then another account's login
    answers = []
    with httpx.Client(base_url=dashboard.url, timeout=10.0) as client:
        for attempt in range(12):
            guess = {"name": "tess", "password": f"guess-{attempt}"}
            answers.append(client.post("/api/login", json=guess).json()["error"])
            if "failed logins in a row" in answers[-1]:
                break
        right = {"name": "tess", "password": "tester-password"}
        refused = client.post("/api/login", json=right)
    with _login(dashboard.url, "vic", "viewer-password"):
        pass

    # Assert: the name is refused for a while, even with its password, as the Accounts
    # API refuses it; each failure and the success are in the audit log
    assert answers[:5] == ["wrong account name or password for 'tess'"] * 5
    assert "failed logins in a row for 'tess'" in answers[-1]
    assert refused.status_code == 401
    assert "failed logins in a row for 'tess'" in refused.json()["error"]
    failed = [r for r in _audit(link, "login.failed") if r["data"]["name"] == "tess"]
    assert len(failed) == len(answers) + 1
    assert failed[0]["data"]["peer"].startswith("127.0.0.1:")
    (login,) = [r for r in _audit(link, "login") if r["actor"] == "vic"][-1:]
    assert login["data"]["via"] == "dashboard"


@contextlib.contextmanager
def _login(url: str, name: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=10.0) as client:
        answer = client.post("/api/login", json={"name": name, "password": password})
        assert answer.status_code == 200, answer.text
        yield client


def test_with_accounts_nothing_is_read_before_a_login(guarded):
    dashboard, run_id = guarded
    with httpx.Client(base_url=dashboard.url, timeout=10.0) as anonymous:
        refused = anonymous.get(f"/api/runs/{run_id}")
        wrong = anonymous.post("/api/login", json={"name": "vic", "password": "not-it-at-all"})
        me = anonymous.get("/api/me").json()

    assert refused.status_code == 401 and "log in" in refused.json()["error"]
    assert wrong.status_code == 401
    assert me == {"accounts": True, "name": None}


def test_the_session_cookie_is_httponly_strict_and_signed(guarded):
    dashboard, _ = guarded
    with httpx.Client(base_url=dashboard.url, timeout=10.0) as client:
        answer = client.post("/api/login", json={"name": "vic", "password": "viewer-password"})
        cookie = answer.headers["set-cookie"]
        value = client.cookies["corolla_session"]
        client.cookies.set("corolla_session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
        forged = client.get("/api/runs")

    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert forged.status_code == 401


def test_a_viewer_reads_but_may_not_stop_a_run(guarded):
    dashboard, run_id = guarded
    with _login(dashboard.url, "vic", "viewer-password") as viewer:
        runs = viewer.get("/api/runs")
        me = viewer.get("/api/me").json()
        refused = viewer.post(f"/api/runs/{run_id}/stop")
        after = viewer.get(f"/api/runs/{run_id}").json()

    assert runs.status_code == 200 and runs.json()["total"] == 1
    assert (me["name"], me["role"], me["may_stop"]) == ("vic", "viewer", False)
    assert refused.status_code == 403
    assert refused.json()["error"] == "this needs the operator role; vic is a viewer"
    assert after["status"] == "running"


def test_an_operator_stops_a_run(guarded):
    dashboard, run_id = guarded
    with _login(dashboard.url, "olga", "operator-password") as operator:
        stopped = operator.post(f"/api/runs/{run_id}/stop")
        after = operator.get(f"/api/runs/{run_id}").json()

    assert stopped.json() == {"run_id": str(run_id), "status": "stopped"}
    assert after["status"] == "stopped" and after["error"] == "stopped from the dashboard"


def test_a_dashboard_stops_once_and_frees_its_port(tmp_path: Path):
    addresses = {"fleet_address": "127.0.0.1:0", "control_address": "127.0.0.1:0"}
    with Link(tmp_path / "link", **addresses) as link:
        dashboard = Dashboard(link, "127.0.0.1:0").start()
        port = dashboard.port

        dashboard.stop()
        dashboard.stop()
        again = Dashboard(link, f"127.0.0.1:{port}").start()
        again.stop()

    assert dashboard.status is DashboardStatus.STOPPED
    with pytest.raises(ConfigError, match="started once"):
        dashboard.start()
