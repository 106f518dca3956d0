"""End to end: after a run of a link and two nodes as real processes, the link's audit
log and each node's verify and hold what happened; an edited record is named."""

from __future__ import annotations

import collections
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from corolla.cli._remote import submit_and_follow
from corolla.project import AppConfig
from corolla.runtime import ControlClient
from corolla.trust import AuditRecord, read_audit_log, verify_audit_log

from ..cli.commands import wait_until
from .test_e2e import APP, RUN_S, Processes, _start_link, _start_nodes, _wait_for_nodes
from .test_e2e import processes as processes  # the fixture

ROUNDS = 2
OVERRIDES = {"num-server-rounds": ROUNDS, "fraction-train": 1.0, "fraction-evaluate": 1.0}


def _records(path: Path) -> list[AuditRecord]:
    verdict = verify_audit_log(path)
    assert verdict.ok, verdict.problem
    return list(read_audit_log(path))


def _of(records: list[AuditRecord], kind: str) -> list[dict[str, Any]]:
    return [r.data for r in records if r.kind == kind]


@pytest.mark.e2e
def test_a_runs_audit_trail_verifies_on_the_link_and_each_node(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: a link and two nodes, each with a state directory of its own
    fleet, control = _start_link(processes, tmp_path)
    _start_nodes(processes, fleet, tmp_path, 2)
    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, 2, processes)
        node_ids = {n.node_id for n in client.list_nodes()}

        # Act: a short run, then everything stopped
        submit_and_follow(
            AppConfig.load(APP),
            f"127.0.0.1:{control}",
            OVERRIDES,
            tmp_path / "out",
            Console(file=io.StringIO()),
            quiet=True,
            timeout=RUN_S,
        )
        (run,) = client.list_runs()
    # The nodes are told the run ended; then everything stops.
    wait_until(
        lambda: all(
            _of(list(read_audit_log(tmp_path / f"node{i}" / "audit.log")), "run.ended")
            for i in range(2)
        ),
        "both nodes recording the run's end",
        seconds=30,
    )
    processes.stop_all()

    # Assert: the link's log holds the run's submission, the nodes, and each message
    # sent with its reply
    link = _records(tmp_path / "link" / "audit.log")
    kinds = [r.kind for r in link]
    assert kinds[0] == "link.start" and kinds[-1] == "link.stop"
    assert _of(link, "run.submit") == [
        {"run_id": run.run_id, "app": "quickstart-numpy", "bundle": run.bundle_sha256}
    ]
    assert {d["node_id"] for d in _of(link, "node.join")} == node_ids
    sent = {d["message_id"]: d for d in _of(link, "message.sent")}
    received = {d["reply_to"]: d for d in _of(link, "reply.received")}
    types = collections.Counter(d["type"] for d in sent.values())
    assert types == {"train": ROUNDS * 2, "evaluate": ROUNDS * 2}
    assert set(received) == set(sent)
    assert all(r["outcome"] == "ok" and r["run_id"] == run.run_id for r in received.values())
    assert all(received[m]["node_id"] == d["node_id"] for m, d in sent.items())
    (end,) = _of(link, "run.end")
    assert end["run_id"] == run.run_id and end["status"] == "finished"

    # Each node's own log holds what it ran, for the run's bundle, as the link sent it.
    for i in range(2):
        node = _records(tmp_path / f"node{i}" / "audit.log")
        (registered,) = _of(node, "node.registered")
        assert registered["node_id"] in node_ids
        ran = {d["message_id"]: d for d in _of(node, "message.ran")}
        mine = {m for m, d in sent.items() if d["node_id"] == registered["node_id"]}
        assert set(ran) == mine and len(mine) == ROUNDS * 2
        assert {d["message_id"] for d in _of(node, "message.received")} == mine
        for message_id, data in ran.items():
            assert data["outcome"] == "ok" and data["bundle"] == run.bundle_sha256
            assert data["type"] == sent[message_id]["type"]
        assert node[0].kind == "node.start" and node[-1].kind == "node.stop"
        assert _of(node, "run.ended") == [{"run_id": run.run_id, "reason": "finished"}]

    # An edited record of the link's log: the submission's bundle hash changed.
    log = tmp_path / "link" / "audit.log"
    lines = log.read_bytes().splitlines(keepends=True)
    at = kinds.index("run.submit")
    record = json.loads(lines[at])
    record["data"]["bundle"] = "0" * 64
    lines[at] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    log.write_bytes(b"".join(lines))
    verified = subprocess.run(
        [sys.executable, "-m", "corolla", "audit", "verify", str(tmp_path / "link")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 1
    assert f"record {at + 1}: its hash does not match its content (edited?)" in verified.stderr
