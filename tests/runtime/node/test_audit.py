"""A node's own audit log: what it ran, with each outcome, against an in-process link."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from corolla.core import ConfigError, ErrorCode, Message, RecordDict
from corolla.runtime import Link, Node
from corolla.trust import AuditLog, read_audit_log, verify_audit_log

from .test_node import COUNTER_APP, _app, _grid_for, _wait_connected


def test_a_node_records_each_message_it_ran_with_its_outcome(
    link: Link, appio_channel: grpc.Channel, tmp_path: Path
) -> None:
    # Arrange: an app that trains, and has no evaluate function
    grid = _grid_for(link, appio_channel, _app(tmp_path / "app", "counter_app", COUNTER_APP))
    (run,) = link.state.list_runs()
    state_dir = tmp_path / "node"
    config = {"partition-id": 0, "num-partitions": 1}

    # Act: a training message, then an evaluation one
    with Node(link.fleet_address, state_dir, node_config=config) as node:
        node_id = _wait_connected(node)
        sent = [
            grid.send([Message(RecordDict(), dst_node_id=node_id, message_type=kind)])[0]
            for kind in ("train", "evaluate")
        ]
        replies = list(grid.receive(sent, timeout=30))

    # Assert: the log verifies and holds the node's life and each message's outcome
    assert len(replies) == 2
    log = state_dir / AuditLog.FILE
    assert verify_audit_log(log).ok
    records = list(read_audit_log(log))
    assert [r.kind for r in records if not r.kind.startswith("message.")] == [
        "node.start",
        "node.registered",
        "node.stop",
    ]
    assert node.key is not None
    assert records[0].data == {"link": link.fleet_address, "public_key": node.key.public_text}
    assert records[1].data["node_id"] == node_id
    received = [r.data["message_id"] for r in records if r.kind == "message.received"]
    ran = {r.data["message_id"]: r.data for r in records if r.kind == "message.ran"}
    assert received == sent and set(ran) == set(sent)
    trained, evaluated = ran[sent[0]], ran[sent[1]]
    assert trained["outcome"] == "ok" and trained["bundle"] == run.bundle_hash
    assert (trained["type"], trained["run_id"]) == ("train", run.run_id)
    assert evaluated["outcome"] == "error" and evaluated["code"] == ErrorCode.NO_HANDLER
    assert evaluated["reason"] and evaluated["seconds"] >= 0


def test_a_node_whose_audit_log_ends_in_no_record_refuses_to_start(tmp_path: Path) -> None:
    # Arrange
    state_dir = tmp_path / "node"
    state_dir.mkdir()
    (state_dir / AuditLog.FILE).write_bytes(b"not a record\n")

    # Act
    with pytest.raises(ConfigError, match="corolla audit verify"):
        Node("127.0.0.1:1", state_dir).start()
    (state_dir / AuditLog.FILE).write_bytes(b"")
    node = Node("127.0.0.1:1", state_dir).start()  # the state directory was let go
    node.stop()

    # Assert
    assert [r.kind for r in read_audit_log(state_dir / AuditLog.FILE)] == [
        "node.start",
        "node.stop",
    ]
