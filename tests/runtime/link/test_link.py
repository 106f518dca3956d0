"""The link's Fleet and ServerAppIo services, called over real gRPC on loopback."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from corolla.core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    ErrorCode,
    Message,
    MessageError,
    MetricRecord,
    RecordDict,
    decode_array,
    encode_array,
)
from corolla.runtime import ControlClient, GrpcGrid, Link, LinkStatus
from corolla.runtime.link import LinkLimits, _link
from corolla.state import NodeAuthenticationError
from corolla.strategy import AttributeSelection
from corolla.transport import (
    INLINE_ARRAY_BYTES,
    EncodedArray,
    array_entries,
    bearer_metadata,
    channel_options,
    chunk_messages,
    fleet_pb2,
    fleet_pb2_grpc,
    message_from_proto,
    message_pb2,
    message_to_proto,
    records_pb2,
    serverappio_pb2,
    serverappio_pb2_grpc,
    user_config_to_proto,
)

from ..replies import inline_reply

HASH = "0" * 64


def _register(fleet: fleet_pb2_grpc.FleetStub) -> tuple[int, tuple[tuple[str, str]]]:
    response = fleet.RegisterNode(fleet_pb2.RegisterNodeRequest())
    return response.node_id, bearer_metadata(response.token)


def _grid(link: Link, channel: grpc.Channel) -> GrpcGrid:
    run = link.state.create_run(HASH, {})
    return GrpcGrid(channel, run.run_id, link.issue_run_secret(run.run_id))


def _receive(
    fleet: fleet_pb2_grpc.FleetStub, metadata: tuple[tuple[str, str]], count: int
) -> list[message_pb2.Message]:
    """The first ``count`` messages of a new Receive stream, which stays open until the
    test ends (see the ``fleet`` fixture)."""
    call = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata, timeout=30)
    return [next(call).message for _ in range(count)]


def _only_entry(proto: message_pb2.Message) -> records_pb2.ArrayEntry:
    (named,) = proto.content.records
    (entry,) = named.array_record.entries
    return entry


def test_link_off_loopback_needs_certificates_or_insecure(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        Link(tmp_path, fleet_address="0.0.0.0:0")


def test_link_lifecycle(tmp_path: Path) -> None:
    link = Link(tmp_path, fleet_address="127.0.0.1:0", control_address="127.0.0.1:0")
    assert link.status is LinkStatus.CREATED
    with link:
        assert link.status is LinkStatus.RUNNING
        assert link.fleet_port > 0 and link.control_port > 0
        with pytest.raises(ConfigError):
            link.start()
    assert link.status is LinkStatus.STOPPED
    link.stop()  # idempotent


def test_fleet_calls_need_a_token(fleet: fleet_pb2_grpc.FleetStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        fleet.Heartbeat(fleet_pb2.HeartbeatRequest())
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as caught:
        fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), metadata=bearer_metadata("1.wrong"))
    assert caught.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)


def test_a_node_rejoins_with_its_id_and_token(fleet: fleet_pb2_grpc.FleetStub) -> None:
    first = fleet.RegisterNode(fleet_pb2.RegisterNodeRequest())
    again = fleet.RegisterNode(
        fleet_pb2.RegisterNodeRequest(node_id=first.node_id, token=first.token)
    )
    assert again.node_id == first.node_id
    fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), metadata=bearer_metadata(again.token))
    with pytest.raises(grpc.RpcError) as caught:
        fleet.RegisterNode(
            fleet_pb2.RegisterNodeRequest(node_id=first.node_id, token=f"{first.node_id}.bad")
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_a_node_token_is_checked_by_the_state_once_then_in_memory(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_id, metadata = _register(fleet)
    checks: list[int] = []
    authenticate = link.state.authenticate_node
    monkeypatch.setattr(
        link.state,
        "authenticate_node",
        lambda node, token: checks.append(node) or authenticate(node, token),
    )
    request = fleet_pb2.StatArraysRequest(sha256=[HASH])

    for _ in range(5):
        fleet.StatArrays(request, metadata=metadata)
    with pytest.raises(grpc.RpcError) as caught:  # the cache compares the secret too
        fleet.StatArrays(request, metadata=bearer_metadata(f"{node_id}.wrong"))

    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert checks == [node_id, node_id]  # the first good call, and the wrong token


def test_a_refused_token_is_checked_by_the_state_again(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = fleet.RegisterNode(fleet_pb2.RegisterNodeRequest())
    metadata = bearer_metadata(node.token)
    request = fleet_pb2.StatArraysRequest(sha256=[HASH])
    fleet.StatArrays(request, metadata=metadata)  # accepted, and remembered
    # The node re-registers (its token is dropped from memory) and the state now refuses
    # it, as it would a node it no longer knows.
    fleet.RegisterNode(fleet_pb2.RegisterNodeRequest(node_id=node.node_id, token=node.token))
    monkeypatch.setattr(
        link.state,
        "authenticate_node",
        lambda node, token: (_ for _ in ()).throw(NodeAuthenticationError("revoked")),
    )

    with pytest.raises(grpc.RpcError) as caught:
        fleet.StatArrays(request, metadata=metadata)

    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("elements", [10, 800_000])  # read whole / stored as it comes
def test_small_and_large_uploads_are_stored_and_checked(
    fleet: fleet_pb2_grpc.FleetStub, elements: int
) -> None:
    _, metadata = _register(fleet)
    good = EncodedArray.from_array(np.arange(elements, dtype=np.float32))
    bad = EncodedArray.from_array(np.arange(elements, dtype=np.float64))
    tampered = list(chunk_messages(bad, chunk_size=1 << 20))
    tampered[-1].data = b"x" * len(tampered[-1].data)

    pushed = fleet.PushArrays(iter(chunk_messages(good, chunk_size=1 << 20)), metadata=metadata)
    with pytest.raises(grpc.RpcError) as caught:
        fleet.PushArrays(iter(tampered), metadata=metadata)

    assert [(s.sha256, s.complete) for s in pushed.arrays] == [(good.sha256, True)]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = fleet.StatArrays(fleet_pb2.StatArraysRequest(sha256=[bad.sha256]), metadata=metadata)
    assert not status.arrays[0].complete


def test_a_pushed_payload_that_does_not_match_its_hash_is_refused(
    fleet: fleet_pb2_grpc.FleetStub,
) -> None:
    _, metadata = _register(fleet)
    encoded = EncodedArray.from_array(np.arange(4.0))
    chunks = list(chunk_messages(encoded))
    chunks[0].data = b"x" * len(chunks[0].data)
    with pytest.raises(grpc.RpcError) as caught:
        fleet.PushArrays(iter(chunks), metadata=metadata)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = fleet.StatArrays(
        fleet_pb2.StatArraysRequest(sha256=[encoded.sha256]), metadata=metadata
    )
    assert not status.arrays[0].complete


def test_messages_reach_nodes_and_replies_reach_the_server_app(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: two nodes holding Receive streams open
    nodes = [_register(fleet) for _ in range(2)]
    grid = _grid(link, appio_channel)
    received: dict[int, fleet_pb2.ReceiveResponse] = {}
    calls = []

    def receive(node_id: int, metadata: tuple[tuple[str, str]]) -> None:
        call = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata)
        calls.append(call)
        received[node_id] = next(call)

    threads = [threading.Thread(target=receive, args=node) for node in nodes]
    for thread in threads:
        thread.start()
    model = ArrayRecord({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    content = RecordDict({"arrays": model})

    # Act: one model to both nodes
    ids = grid.send(
        [Message(content, dst_node_id=node_id, message_type="train") for node_id, _ in nodes]
    )
    for thread in threads:
        thread.join(10)

    # Assert: pushed at once, the model stored once
    assert sorted(received) == sorted(node_id for node_id, _ in nodes)
    stored = {link.state.message_status(i).value for i in ids}
    assert stored == {"delivered"}
    entries = {
        r.message.content.records[0].array_record.entries[0].sha256 for r in received.values()
    }
    assert len(entries) == 1

    # Act: each node pulls the model and replies with its own update
    for node_id, metadata in nodes:
        proto = received[node_id].message
        arrays: dict[str, np.ndarray] = {}
        for sha256 in entries:
            data = b"".join(
                c.data
                for c in fleet.PullArrays(
                    fleet_pb2.PullArraysRequest(sha256=sha256), metadata=metadata
                )
            )
            arrays[sha256] = decode_array(data)
        message = message_from_proto(proto, arrays)
        update = ArrayRecord({"w": np.asarray(message.content["arrays"]["w"]) + node_id % 7})
        reply = Message(
            RecordDict({"arrays": update, "metrics": MetricRecord({"n": 1})}), reply_to=message
        )
        reply_proto, reply_arrays = message_to_proto(reply)
        fleet.PushArrays(
            (c for e in reply_arrays.values() for c in chunk_messages(e)), metadata=metadata
        )
        fleet.SendReply(fleet_pb2.SendReplyRequest(message=reply_proto), metadata=metadata)

    replies = list(grid.receive(ids, timeout=10))

    # Assert
    assert sorted(r.metadata.src_node_id for r in replies) == sorted(n for n, _ in nodes)
    for reply in replies:
        expected = model["w"] + reply.metadata.src_node_id % 7
        np.testing.assert_array_equal(reply.content["arrays"]["w"], expected)


def test_a_reply_whose_arrays_were_not_pushed_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    node_id, metadata = _register(fleet)
    grid = _grid(link, appio_channel)
    (message_id,) = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
    (proto,) = _receive(fleet, metadata, 1)
    request = message_from_proto(proto, {})
    reply = Message(RecordDict({"a": ArrayRecord({"x": np.ones(3)})}), reply_to=request)
    reply_proto, _ = message_to_proto(reply)

    with pytest.raises(grpc.RpcError) as caught:
        fleet.SendReply(fleet_pb2.SendReplyRequest(message=reply_proto), metadata=metadata)

    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert link.state.message_status(message_id).value == "delivered"


def test_a_node_receives_a_small_model_inline_and_a_large_one_by_reference(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: a small model, and one whose encoding is just over the inline budget
    node_id, metadata = _register(fleet)
    grid = _grid(link, appio_channel)
    small = np.arange(6, dtype=np.float32).reshape(2, 3)
    large = np.arange(INLINE_ARRAY_BYTES // 4 + 1, dtype=np.float32)
    assert len(encode_array(large)) > INLINE_ARRAY_BYTES
    small_id, large_id = grid.send(
        [
            Message(
                RecordDict({"arrays": ArrayRecord({"w": w})}),
                dst_node_id=node_id,
                message_type="train",
            )
            for w in (small, large)
        ]
    )

    # Act
    received = {p.metadata.message_id: p for p in _receive(fleet, metadata, 2)}

    # Assert: the small model decodes with nothing to pull; the large one is pulled
    small_entry = _only_entry(received[small_id])
    assert small_entry.data == encode_array(small)
    assert array_entries(received[small_id]) == {}
    rebuilt = message_from_proto(received[small_id], {})
    np.testing.assert_array_equal(rebuilt.content["arrays"]["w"], small)
    large_entry = _only_entry(received[large_id])
    assert large_entry.data == b""
    assert list(array_entries(received[large_id])) == [large_entry.sha256]
    pulled = b"".join(
        c.data
        for c in fleet.PullArrays(
            fleet_pb2.PullArraysRequest(sha256=large_entry.sha256), metadata=metadata
        )
    )
    rebuilt = message_from_proto(received[large_id], {large_entry.sha256: decode_array(pulled)})
    np.testing.assert_array_equal(rebuilt.content["arrays"]["w"], large)


def test_a_message_sent_again_on_a_new_stream_carries_its_small_arrays_inline(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    node_id, metadata = _register(fleet)
    grid = _grid(link, appio_channel)
    model = np.arange(4, dtype=np.int64)
    content = RecordDict({"m": ArrayRecord({"w": model})})
    (message_id,) = grid.send([Message(content, dst_node_id=node_id, message_type="train")])
    (first,) = _receive(fleet, metadata, 1)

    (again,) = _receive(fleet, metadata, 1)

    assert again.metadata.message_id == first.metadata.message_id == message_id
    assert _only_entry(again).data == encode_array(model)


# Reply content kept in the state's row (up to 2 MiB), or, with a large config record
# beside the inline array, in a blob.
@pytest.mark.parametrize(("elements", "padding"), [(3, 0), (50_000, 0), (3, 3 * 1024 * 1024)])
def test_a_reply_with_its_arrays_inline_needs_no_push_and_reaches_the_server_app(
    link: Link,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    elements: int,
    padding: int,
) -> None:
    # Arrange: a delivered message, and a reply carrying its update inline
    node_id, metadata = _register(fleet)
    grid = _grid(link, appio_channel)
    (message_id,) = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
    (proto,) = _receive(fleet, metadata, 1)
    update = np.linspace(-1, 1, elements, dtype=np.float32)
    content = {"arrays": ArrayRecord({"w": update}), "metrics": MetricRecord({"n": 2})}
    if padding:
        content["extra"] = ConfigRecord({"blob": b"\x01" * padding})
    reply = Message(RecordDict(content), reply_to=message_from_proto(proto, {}))
    reply_proto, to_push = message_to_proto(
        reply.with_metadata(src_node_id=node_id), inline_bytes=INLINE_ARRAY_BYTES
    )
    assert to_push == {}

    # Act: no PushArrays
    sent = fleet.SendReply(fleet_pb2.SendReplyRequest(message=reply_proto), metadata=metadata)
    (received,) = grid.receive([message_id], timeout=30)

    # Assert
    assert sent.message_id == received.metadata.message_id
    assert received.metadata.src_node_id == node_id
    np.testing.assert_array_equal(received.content["arrays"]["w"], update)
    assert received.content["metrics"]["n"] == 2
    if padding:
        assert received.content["extra"]["blob"] == b"\x01" * padding
    assert link.state.message_status(message_id).value == "replied"


def test_the_server_app_needs_its_run_secret(appio_channel: grpc.Channel) -> None:
    grid = GrpcGrid(appio_channel, 1, "not-a-secret")
    with pytest.raises(ConnectionError, match="UNAUTHENTICATED"):
        grid.node_ids()


def test_a_message_not_replied_to_comes_again_on_a_new_stream(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    node_id, metadata = _register(fleet)
    grid = _grid(link, appio_channel)
    (message_id,) = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
    first = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata)
    assert next(first).message.metadata.message_id == message_id

    # A node reconnecting before the link noticed its old stream is gone
    again = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata)
    redelivered = next(again).message.metadata.message_id

    assert redelivered == message_id
    assert link.state.get_node(node_id).online


def test_a_node_whose_stream_ends_goes_offline_and_is_online_again_once_it_registers(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: a message delivered to a node on its only stream
    node_id, metadata = _register(fleet)
    grid = _grid(link, appio_channel)
    (message_id,) = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
    call = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata)
    next(call)

    # Act: the stream ends (the node's connection dropped); no heartbeat was missed
    call.cancel()
    (reply,) = grid.receive([message_id], timeout=30)
    offline = link.state.get_node(node_id)
    token = dict(metadata)["authorization"].removeprefix("Bearer ")
    fleet.RegisterNode(fleet_pb2.RegisterNodeRequest(node_id=node_id, token=token))

    # Assert
    assert reply.error.code == ErrorCode.NODE_UNAVAILABLE
    assert "disconnected" in reply.error.reason
    assert not offline.online
    assert link.state.get_node(node_id).online
    leave = [e.event for e in link.state.read_events(0) if e.event.kind == "node.leave"]
    assert [e.node_id for e in leave] == [node_id]


def test_a_silent_node_goes_offline_and_its_message_is_answered_with_an_error(
    tmp_path: Path,
) -> None:
    with (
        Link(
            tmp_path / "link",
            fleet_address="127.0.0.1:0",
            control_address="127.0.0.1:0",
            limits=LinkLimits(heartbeat_interval=0.1, sweep_interval=0.05),
        ) as link,
        grpc.insecure_channel(link.fleet_address) as fleet_channel,
        grpc.insecure_channel(link.serverappio_address) as appio,
    ):
        node_id, _ = _register(fleet_pb2_grpc.FleetStub(fleet_channel))
        grid = _grid(link, appio)
        ids = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])

        replies = list(grid.receive(ids, timeout=30))

        assert len(replies) == 1 and replies[0].has_error()
        assert replies[0].error.code == ErrorCode.NODE_UNAVAILABLE
        assert grid.node_ids() == []


def test_the_server_app_saves_and_loads_checkpoints(
    link: Link, appio_channel: grpc.Channel
) -> None:
    grid = _grid(link, appio_channel)
    first = RecordDict({"loop": ConfigRecord({"round": "one"})})
    second = RecordDict({"loop": ConfigRecord({"round": "two"})})
    assert grid.checkpoints.load() is None

    grid.checkpoints.save(1, first)
    grid.checkpoints.save(2, second)

    assert grid.checkpoints.load() == (2, second)
    with pytest.raises(ConfigError):
        grid.checkpoints.save(1, first)


def test_the_grid_tells_selection_policies_each_nodes_attributes_and_last_heartbeat(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    tagged = fleet.RegisterNode(
        fleet_pb2.RegisterNodeRequest(
            attributes=user_config_to_proto({"tags": "gpu,eu", "region": "eu"})
        )
    ).node_id
    plain, _ = _register(fleet)
    grid = _grid(link, appio_channel)
    policy = AttributeSelection(grid.node_attributes, tags={"gpu"})
    before = time.time()

    ids = grid.node_ids()

    assert sorted(ids) == sorted([tagged, plain])
    assert grid.node_attributes(tagged) == {"tags": "gpu,eu", "region": "eu"}
    assert grid.node_attributes(plain) == {}
    assert policy.select(ids, 2, np.random.default_rng(0)) == [tagged]
    seen = grid.node_last_seen
    for node_id in ids:
        last = seen(node_id)
        assert last is not None and before - 60 < last <= time.time()
    assert grid.node_attributes(123456789) == {}
    assert grid.node_last_seen(123456789) is None


def _inline_reply(
    node_id: int, proto: message_pb2.Message, update: np.ndarray
) -> fleet_pb2.SendReplyRequest:
    """A node's reply to ``proto`` carrying ``update`` inline: nothing to push."""
    request = message_from_proto(proto, {})
    return fleet_pb2.SendReplyRequest(message=inline_reply(node_id, request, update))


def test_replies_written_on_one_stream_are_each_acknowledged_in_order(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: three messages delivered to one node, and a reply to each
    node_id, metadata = _register(fleet)
    grid = _grid(link, appio_channel)
    ids = grid.send(
        [Message(RecordDict(), dst_node_id=node_id, message_type="train") for _ in range(3)]
    )
    received = {p.metadata.message_id: p for p in _receive(fleet, metadata, 3)}
    updates = [np.full(3, position, dtype=np.float32) for position in range(3)]
    requests = [
        _inline_reply(node_id, received[message_id], update)
        for message_id, update in zip(ids, updates)
    ]

    # Act
    responses = list(fleet.SendReplies(iter(requests), metadata=metadata, timeout=30))
    replies = {r.metadata.message_id: r for r in grid.receive(ids, timeout=30)}

    # Assert: one acknowledgement per reply, in the order written, each naming its reply
    assert [r.WhichOneof("outcome") for r in responses] == ["message_id"] * 3
    acknowledged = [r.message_id for r in responses]
    assert len(set(acknowledged)) == 3
    assert sorted(replies) == sorted(acknowledged)
    for message_id, reply_id, update in zip(ids, acknowledged, updates):
        reply = replies[reply_id]
        assert reply.metadata.reply_to_message_id == message_id
        assert reply.metadata.src_node_id == node_id
        np.testing.assert_array_equal(reply.content["arrays"]["w"], update)
    assert {link.state.message_status(i).value for i in ids} == {"replied"}


def test_a_reply_written_again_on_the_stream_gets_the_first_id(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    node_id, metadata = _register(fleet)
    grid = _grid(link, appio_channel)
    (message_id,) = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
    (proto,) = _receive(fleet, metadata, 1)
    request = _inline_reply(node_id, proto, np.arange(3, dtype=np.float32))

    first, again = fleet.SendReplies(iter([request, request]), metadata=metadata, timeout=30)

    assert first.WhichOneof("outcome") == again.WhichOneof("outcome") == "message_id"
    assert first.message_id and again.message_id == first.message_id
    (stored,) = grid.receive([message_id], timeout=30)
    assert stored.metadata.message_id == first.message_id


def _blob_files(link: Link) -> set[str]:
    return {path.name for path in (link.state_dir / "blobs").glob("*/*") if path.is_file()}


def test_a_round_s_blobs_are_deleted_once_the_server_app_received_its_replies(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: a model too large to travel inline, sent to two nodes, each answering
    # with its own update, pushed as a blob.
    nodes = [_register(fleet) for _ in range(2)]
    grid = _grid(link, appio_channel)
    model = np.arange(INLINE_ARRAY_BYTES // 4 + 1, dtype=np.float32)
    content = RecordDict({"arrays": ArrayRecord({"w": model})})
    ids = grid.send([Message(content, dst_node_id=n, message_type="train") for n, _ in nodes])
    streams = {
        node_id: fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata, timeout=30)
        for node_id, metadata in nodes
    }
    for node_id, metadata in nodes:
        proto = next(streams[node_id]).message
        request = message_from_proto(proto, {_only_entry(proto).sha256: model})
        update = ArrayRecord({"w": model + node_id})
        reply = Message(RecordDict({"arrays": update}), reply_to=request)
        reply_proto, to_push = message_to_proto(reply.with_metadata(src_node_id=node_id))
        chunks = (c for e in to_push.values() for c in chunk_messages(e))
        fleet.PushArrays(chunks, metadata=metadata)
        fleet.SendReply(fleet_pb2.SendReplyRequest(message=reply_proto), metadata=metadata)
    during_round = _blob_files(link)

    # Act: the ServerApp receives the round
    replies = list(grid.receive(ids, timeout=10))
    deadline = time.monotonic() + 10.0
    while _blob_files(link) and time.monotonic() < deadline:  # collected on a thread
        time.sleep(0.05)

    # Assert: the model, its message content and both updates were stored, and are gone
    assert len(replies) == 2 and len(during_round) == 4
    assert _blob_files(link) == set()
    with pytest.raises(MessageError, match="released"):
        list(grid.receive(ids, timeout=1))
    # The same model sent again is uploaded again.
    (again,) = grid.send([Message(content, dst_node_id=nodes[0][0], message_type="train")])
    proto = next(streams[nodes[0][0]]).message
    assert proto.metadata.message_id == again and _only_entry(proto).sha256 in _blob_files(link)


def test_releasing_a_message_the_run_does_not_have_is_refused_and_the_grid_logs_it(
    link: Link, appio_channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    grid = _grid(link, appio_channel)
    stub = serverappio_pb2_grpc.ServerAppIoStub(appio_channel)
    request = serverappio_pb2.ReleaseMessagesRequest(message_ids=["no-such-message"])

    with pytest.raises(grpc.RpcError) as caught:
        stub.ReleaseMessages(request, metadata=grid._metadata)
    with caplog.at_level(logging.WARNING, logger="corolla.runtime.grid"):
        grid._release(["no-such-message"])
        deadline = time.monotonic() + 10.0
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.02)

    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "no-such-message" in (caught.value.details() or "")
    assert "could not release 1 messages" in caplog.text
    assert "no-such-message" in caplog.text


@contextlib.contextmanager
def _fleet_of_new_link(tmp_path: Path, **limits: Any) -> Iterator[fleet_pb2_grpc.FleetStub]:
    """A Fleet stub of a link started here with these limits."""
    with (
        Link(
            tmp_path / "link",
            fleet_address="127.0.0.1:0",
            control_address="127.0.0.1:0",
            limits=LinkLimits(**limits),
        ) as link,
        grpc.insecure_channel(link.fleet_address, options=channel_options()) as channel,
    ):
        yield fleet_pb2_grpc.FleetStub(channel)


def test_array_downloads_beyond_the_link_s_slots_wait_for_one_to_end(
    tmp_path: Path,
) -> None:
    # Arrange: a link moving one array stream at a time, a 40 MB payload (10 chunks, more
    # than the buffers between the two ends can hold), and a node pulling it twice
    encoded = EncodedArray.from_array(np.arange(10_000_000, dtype=np.float32))
    with _fleet_of_new_link(tmp_path, download_streams=1) as fleet:
        _, metadata = _register(fleet)
        fleet.PushArrays(iter(chunk_messages(encoded)), metadata=metadata)
        request = fleet_pb2.PullArraysRequest(sha256=encoded.sha256)
        first = fleet.PullArrays(request, metadata=metadata, timeout=30)
        second = fleet.PullArrays(request, metadata=metadata, timeout=30)
        next(first)
        arrived = threading.Event()
        waiting = threading.Thread(target=lambda: (next(second), arrived.set()), daemon=True)

        # Act / Assert: the second waits while the first holds the slot, then goes on
        waiting.start()
        assert not arrived.wait(1.0)
        first.cancel()
        assert arrived.wait(10)
        rest = b"".join(c.data for c in second)
        waiting.join(10)
    assert len(rest) == encoded.size - 4 * 1024 * 1024


def _stat_in_thread(
    fleet: fleet_pb2_grpc.FleetStub, metadata: tuple[tuple[str, str]], sha256: str
) -> threading.Event:
    """Call StatArrays for ``sha256`` on a thread; the event is set when it returns."""
    answered = threading.Event()

    def stat() -> None:
        fleet.StatArrays(
            fleet_pb2.StatArraysRequest(sha256=[sha256]), metadata=metadata, timeout=30
        )
        answered.set()

    threading.Thread(target=stat, daemon=True).start()
    return answered


def test_a_node_told_to_push_gets_an_upload_slot_before_it_opens_its_stream(
    tmp_path: Path,
) -> None:
    # Arrange: one upload slot; two nodes, each with a payload the link lacks
    first_payload = EncodedArray.from_array(np.arange(300_000, dtype=np.float32))
    second_payload = EncodedArray.from_array(np.arange(300_000, dtype=np.float64))
    with _fleet_of_new_link(tmp_path, upload_streams=1) as fleet:
        _, first = _register(fleet)
        _, second = _register(fleet)

        # Act: the first node is told to push (and its slot set aside); the second waits
        assert _stat_in_thread(fleet, first, first_payload.sha256).wait(10)
        second_told = _stat_in_thread(fleet, second, second_payload.sha256)
        waited = not second_told.wait(1.0)
        fleet.PushArrays(iter(chunk_messages(first_payload)), metadata=first)

        # Assert: the second is told once the first upload is over, and pushes in turn
        assert waited
        assert second_told.wait(10)
        pushed = fleet.PushArrays(iter(chunk_messages(second_payload)), metadata=second)
    assert [s.complete for s in pushed.arrays] == [True]


def test_a_slot_set_aside_for_an_upload_that_never_comes_is_given_back(
    tmp_path: Path,
) -> None:
    payload = EncodedArray.from_array(np.arange(1000, dtype=np.float32))
    with _fleet_of_new_link(tmp_path, upload_streams=1, slot_kept_s=0.5) as fleet:
        _, first = _register(fleet)
        _, second = _register(fleet)
        assert _stat_in_thread(fleet, first, payload.sha256).wait(10)  # and never pushes

        started = time.monotonic()
        assert _stat_in_thread(fleet, second, payload.sha256).wait(10)
        waited = time.monotonic() - started
        pushed = fleet.PushArrays(iter(chunk_messages(payload)), metadata=second)
    assert 0.3 < waited < 5
    assert [s.complete for s in pushed.arrays] == [True]


def test_the_link_hands_memory_back_once_its_array_transfers_have_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[float] = []
    monkeypatch.setattr(_link, "malloc_trim", lambda: trims.append(time.monotonic()) or True)
    payload = EncodedArray.from_array(np.arange(500_000, dtype=np.float32))
    with _fleet_of_new_link(tmp_path, sweep_interval=0.05, idle_trim_s=0.3) as fleet:
        _, metadata = _register(fleet)
        time.sleep(0.6)  # idle since the start: one trim
        before = len(trims)
        fleet.PushArrays(iter(chunk_messages(payload, chunk_size=1 << 20)), metadata=metadata)
        pushed = time.monotonic()
        time.sleep(1.0)
        after = list(trims[before:])

    assert before == 1
    assert len(after) == 1  # once after the transfer, not at every sweep
    assert after[0] - pushed >= 0.25


def test_nodes_running_a_stopped_run_s_messages_are_told_at_once(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: two nodes handed a message of the run, one of them asking for notices,
    # and a third node that was sent nothing of it
    (told, told_md), (old, old_md), (idle, idle_md) = [_register(fleet) for _ in range(3)]
    grid = _grid(link, appio_channel)
    ids = grid.send(
        [Message(RecordDict(), dst_node_id=n, message_type="train") for n in (told, old)]
    )
    request = fleet_pb2.ReceiveRequest(run_notices=True)
    told_stream = fleet.Receive(request, metadata=told_md, timeout=30)
    old_stream = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=old_md, timeout=30)
    idle_stream = fleet.Receive(request, metadata=idle_md, timeout=30)
    assert next(told_stream).message.metadata.message_id in ids
    assert next(old_stream).message.metadata.message_id in ids

    # Act
    with ControlClient(link.control_address) as client:
        client.stop_run(grid.run_id, "enough")
    notice = next(told_stream)

    # Assert: the node running its message is told, the messages were answered
    assert notice.WhichOneof("item") == "run_ended"
    assert (notice.run_ended.run_id, notice.run_ended.reason) == (grid.run_id, "stopped: enough")
    assert {link.state.message_status(i).value for i in ids} == {"failed"}
    # The others get nothing: a message sent now to each is the next thing they read.
    later = _grid(link, appio_channel)
    later.send([Message(RecordDict(), dst_node_id=n, message_type="train") for n in (old, idle)])
    assert next(old_stream).WhichOneof("item") == "message"
    assert next(idle_stream).WhichOneof("item") == "message"
