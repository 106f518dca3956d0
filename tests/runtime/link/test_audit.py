"""What the link records in its audit log, called over real gRPC on loopback."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from corolla.core import Message, RecordDict
from corolla.runtime import GrpcGrid, Link
from corolla.runtime.link import LinkLimits
from corolla.transport import (
    bearer_metadata,
    fleet_pb2,
    fleet_pb2_grpc,
    message_from_proto,
    user_config_to_proto,
)
from corolla.trust import AuditRecord, read_audit_log, verify_audit_log

from ..replies import inline_reply

HASH = "0" * 64


def _records(link: Link) -> list[AuditRecord]:
    path = link.state_dir / "audit.log"
    assert verify_audit_log(path).ok
    return list(read_audit_log(path))


def _of(records: list[AuditRecord], kind: str) -> list[dict[str, Any]]:
    return [r.data for r in records if r.kind == kind]


def _register(
    fleet: fleet_pb2_grpc.FleetStub, **attributes: str
) -> tuple[int, tuple[tuple[str, str]]]:
    request = fleet_pb2.RegisterNodeRequest(attributes=user_config_to_proto(attributes))
    response = fleet.RegisterNode(request)
    return response.node_id, bearer_metadata(response.token)


def test_a_link_records_its_start_and_its_stop_around_everything_else(tmp_path: Path) -> None:
    # Act
    with Link(
        tmp_path / "link", fleet_address="127.0.0.1:0", control_address="127.0.0.1:0"
    ) as link:
        fleet_address = link.fleet_address
        with grpc.insecure_channel(fleet_address) as channel:
            _register(fleet_pb2_grpc.FleetStub(channel), zone="eu")

    # Assert
    records = _records(link)
    assert [r.kind for r in records] == ["link.start", "node.join", "link.stop"]
    start = records[0].data
    assert start["fleet"] == fleet_address
    assert (start["tls"], start["auth"], start["federation"]) == (False, False, "default")
    assert records[1].data["attributes"] == {"zone": "eu"}
    assert records[1].data["rejoin"] is False
    assert all(r.actor == "" for r in records)


def test_a_round_s_messages_and_replies_are_recorded_and_a_forged_reply_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: two nodes, a message to each
    (first, first_md), (second, _) = _register(fleet), _register(fleet)
    run = link.state.create_run(HASH, {})
    grid = GrpcGrid(appio_channel, run.run_id, link.issue_run_secret(run.run_id))
    ids = grid.send(
        [Message(RecordDict(), dst_node_id=n, message_type="train") for n in (first, second)]
    )
    call = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=first_md, timeout=30)
    asked = message_from_proto(next(call).message, {})

    # Act: the first node answers its message, then answers as the second node
    fleet.SendReply(
        fleet_pb2.SendReplyRequest(message=inline_reply(first, asked, np.ones(3, np.float32))),
        metadata=first_md,
    )
    forged = inline_reply(second, asked, np.ones(3, np.float32))
    with pytest.raises(grpc.RpcError):
        fleet.SendReply(fleet_pb2.SendReplyRequest(message=forged), metadata=first_md)

    # Assert: both messages sent, recorded at once; one reply taken, one refused
    records = _records(link)
    sent = [r for r in records if r.kind == "message.sent"]
    assert [r.data["message_id"] for r in sent] == ids
    assert [r.data["node_id"] for r in sent] == [first, second]
    assert {r.data["type"] for r in sent} == {"train"}
    assert sent[1].seq == sent[0].seq + 1 and sent[1].time == sent[0].time
    (received,) = _of(records, "reply.received")
    assert received["reply_to"] == ids[0] and received["node_id"] == first
    assert received["outcome"] == "ok" and received["run_id"] == run.run_id
    (rejected,) = _of(records, "reply.rejected")
    assert rejected["node_id"] == first and rejected["claimed_node_id"] == second
    assert f"cannot send a reply as node {second}" in rejected["reason"]
    call.cancel()


def _wait_for_leave(link: Link) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = _of(_records(link), "node.leave")
        if left:
            (leave,) = left
            return leave
        time.sleep(0.05)
    raise AssertionError("no node.leave recorded within 30 s")


def test_a_node_whose_stream_ends_is_recorded_leaving(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: a node holding its stream, on which a message came
    node_id, metadata = _register(fleet)
    run = link.state.create_run(HASH, {})
    grid = GrpcGrid(appio_channel, run.run_id, link.issue_run_secret(run.run_id))
    grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
    call = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata)
    next(call)

    # Act
    call.cancel()

    # Assert
    assert _wait_for_leave(link) == {"node_id": node_id, "why": "disconnected"}


def test_a_silent_node_is_recorded_leaving(tmp_path: Path) -> None:
    with Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        limits=LinkLimits(heartbeat_interval=0.1, sweep_interval=0.05),
    ) as link:
        with grpc.insecure_channel(link.fleet_address) as channel:
            node_id, _ = _register(fleet_pb2_grpc.FleetStub(channel))

        leave = _wait_for_leave(link)

    assert leave == {"node_id": node_id, "why": "missed heartbeats"}


def test_a_log_that_cannot_be_written_is_reported_and_the_link_goes_on(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, caplog: pytest.LogCaptureFixture
) -> None:
    # Arrange: the link's log closed under it
    link._shared.audit.close()  # type: ignore[union-attr]

    # Act
    with caplog.at_level(logging.ERROR, "corolla.runtime"):
        node_id, _ = _register(fleet)

    # Assert
    assert node_id in {n.node_id for n in link.state.list_nodes()}
    assert any("node.join not written" in r.getMessage() for r in caplog.records)
