"""Bad input to a running link: each gets a clear error back, the link stays up, runs go on."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from corolla.core import ArrayRecord, CorollaError, ErrorCode, Event, Message, RecordDict
from corolla.runtime import ControlClient, GrpcGrid, Link, Node, NodeStatus, make_bundle
from corolla.transport import (
    INLINE_ARRAY_BYTES,
    EncodedArray,
    bearer_metadata,
    channel_options,
    chunk_messages,
    control_pb2,
    control_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    message_from_proto,
    message_to_proto,
    run_pb2,
    sha256_of,
)

from .replies import inline_reply, tampered

WAIT_S = 60.0
HASH = "0" * 64

#: A reply's arrays go wrong in the way node_config["mode"] says.
CLIENT_APP = """
import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    w = np.asarray(message.content["arrays"]["w"]) + 1
    mode = context.node_config.get("mode", "good")
    if mode == "wrong-name":
        arrays = ArrayRecord({"v": w})
    elif mode == "wrong-shape":
        arrays = ArrayRecord({"w": np.ones(5, dtype=w.dtype)})
    elif mode == "wrong-dtype":
        arrays = ArrayRecord({"w": w.astype(np.float64)})
    elif mode == "nan":
        arrays = ArrayRecord({"w": np.where(np.arange(w.size) == 0, np.nan, w).astype(w.dtype)})
    elif mode == "inf":
        arrays = ArrayRecord({"w": np.full_like(w, np.inf)})
    else:
        arrays = ArrayRecord({"w": w})
    metrics = MetricRecord({"num-examples": 1})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)
"""

FEDAVG_SERVER_APP = """
import numpy as np

from corolla.core import ArrayRecord
from corolla.server import ServerApp
from corolla.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=2,
        min_available_nodes=2,
        min_train_replies=1,
        seed=0,
    )
    strategy.start(grid, ArrayRecord({"w": np.zeros(3, dtype=np.float32)}), num_rounds=1)
"""

QUICK_SERVER_APP = """
from corolla.core import Event
from corolla.server import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    grid.emit(Event("quick.done", grid.run_id))
"""

#: A run that goes on while bad input arrives: it emits a tick every 0.1 s.
TICKING_SERVER_APP = """
import time

from corolla.core import Event
from corolla.server import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    for _ in range(1200):
        grid.emit(Event("tick", grid.run_id))
        time.sleep(0.1)
"""

BROKEN_SERVER_APP = """
raise RuntimeError("this app does not import")
"""


def _app(root: Path, module: str, server: str, client: str = "") -> Path:
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "server_app.py").write_text(textwrap.dedent(server))
    (root / module / "client_app.py").write_text(textwrap.dedent(client))
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "{module}"
            [tool.corolla.app]
            serverapp = "{module}.server_app:app"
            clientapp = "{module}.client_app:app"
            """
        )
    )
    return root


@pytest.fixture
def client(link: Link) -> Iterator[ControlClient]:
    with ControlClient(link.control_address) as control:
        yield control


@pytest.fixture
def bystander(client: ControlClient, tmp_path: Path) -> Iterator[int]:
    """The id of a run that is running (and ticking) when the test begins."""
    run = client.submit(_app(tmp_path / "ticking", "ticking_app", TICKING_SERVER_APP))
    try:
        _assert_going_on(client, run.run_id)
        yield run.run_id
    finally:
        client.stop_run(run.run_id)


def _assert_going_on(client: ControlClient, run_id: int) -> None:
    """The run is running and emits a new tick."""
    assert client.get_run(run_id).status == run_pb2.RUN_STATUS_RUNNING
    seen = [seq for seq, _ in client.events(run_id, follow=False)]
    after = seen[-1] if seen else 0
    for _, event in client.events(run_id, after=after, timeout=WAIT_S):
        if event.kind == "tick":
            return
    pytest.fail(f"run {run_id} stopped ticking")


def _register(fleet: fleet_pb2_grpc.FleetStub) -> tuple[int, tuple[tuple[str, str]]]:
    response = fleet.RegisterNode(fleet_pb2.RegisterNodeRequest())
    return response.node_id, bearer_metadata(response.token)


def _assert_link_up(fleet: fleet_pb2_grpc.FleetStub) -> None:
    node_id, metadata = _register(fleet)
    fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), metadata=metadata, timeout=10)
    assert node_id > 0


def _fails(call: Callable[..., object], *args: object, **kwargs: object) -> grpc.RpcError:
    """The error of a call that must fail."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def _run_events(client: ControlClient, run_id: int) -> list[Event]:
    return [event for _, event in client.events(run_id, timeout=WAIT_S)]


def _wait_connected(node: Node) -> int:
    deadline = time.monotonic() + WAIT_S
    for _ in range(int(WAIT_S / 0.05)):
        if node.status is NodeStatus.CONNECTED and node.node_id is not None:
            return node.node_id
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail(f"the node did not connect within {WAIT_S} s")


def test_malformed_protobuf_is_refused_with_invalid_argument(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, client: ControlClient, bystander: int
) -> None:
    _, metadata = _register(fleet)
    garbage = b"\xff\xff\xff\x0f not a protobuf message"
    with grpc.insecure_channel(link.fleet_address, options=channel_options()) as channel:
        # Identity serializers: the bytes go on the wire as they are.
        unary = channel.unary_unary("/corolla.v1.Fleet/SendReply")
        stream = channel.stream_unary("/corolla.v1.Fleet/PushArrays")

        unary_error = _fails(unary, garbage, metadata=metadata, timeout=10)
        stream_error = _fails(stream, iter([garbage]), metadata=metadata, timeout=10)

    assert unary_error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed request to /corolla.v1.Fleet/SendReply" in (unary_error.details() or "")
    assert "corolla.v1.SendReplyRequest" in (unary_error.details() or "")
    assert stream_error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "corolla.v1.Chunk" in (stream_error.details() or "")
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


def test_an_oversized_message_is_refused_with_resource_exhausted(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, client: ControlClient, bystander: int
) -> None:
    # A 65 MiB attribute: beyond the 64 MiB both ends accept.
    request = fleet_pb2.RegisterNodeRequest()
    entry = request.attributes.entries.add()
    entry.key = "huge"
    entry.value.string_value = "x" * (65 << 20)
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(link.fleet_address, options=options) as channel:
        error = _fails(fleet_pb2_grpc.FleetStub(channel).RegisterNode, request, timeout=30)

    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (error.details() or "")
    assert link.state.list_nodes() == []
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


def test_an_unknown_run_id_is_refused_with_not_found_or_to_a_node_without_saying(
    client: ControlClient, fleet: fleet_pb2_grpc.FleetStub, bystander: int
) -> None:
    _, metadata = _register(fleet)

    node_error = _fails(fleet.GetRun, run_pb2.GetRunRequest(run_id=999), metadata=metadata)
    with pytest.raises(CorollaError, match="NOT_FOUND: unknown run id 999"):
        client.get_run(999)
    with pytest.raises(CorollaError, match="NOT_FOUND: unknown run id 999"):
        list(client.events(999, follow=False, timeout=10))

    # A node reads only the runs it serves messages of: whether run 999 exists is not
    # its business.
    assert node_error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "serving no message of run 999" in (node_error.details() or "")
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


def test_an_unknown_node_id_is_refused(
    link: Link,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    client: ControlClient,
    bystander: int,
) -> None:
    run = link.state.create_run(HASH, {})
    grid = GrpcGrid(appio_channel, run.run_id, link.issue_run_secret(run.run_id))

    heartbeat = _fails(fleet.Heartbeat, fleet_pb2.HeartbeatRequest(), metadata=[])
    unknown = _fails(
        fleet.Heartbeat, fleet_pb2.HeartbeatRequest(), metadata=bearer_metadata("999.secret")
    )
    rejoin = _fails(fleet.RegisterNode, fleet_pb2.RegisterNodeRequest(node_id=999, token="999.x"))
    sent = grid.send([Message(RecordDict(), dst_node_id=999, message_type="train")])
    (answer,) = grid.receive(sent, timeout=10)

    assert heartbeat.code() is grpc.StatusCode.UNAUTHENTICATED
    # Not UNAVAILABLE: that would invite the caller to retry something that cannot work.
    assert unknown.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "unknown node id 999" in (unknown.details() or "")
    assert rejoin.code() is grpc.StatusCode.UNAUTHENTICATED
    # A message to it is answered at once, as one to a node gone offline.
    assert answer.has_error() and answer.error.code == ErrorCode.NODE_UNAVAILABLE
    assert "no node 999" in answer.error.reason
    assert "unknown node id 999" in (rejoin.details() or "")
    _assert_link_up(fleet)
    assert grid.node_ids() != []
    _assert_going_on(client, bystander)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("wrong-name", "'arrays' has arrays ['v'], expected ['w']"),
        ("wrong-shape", "has shape (5,), expected (3,)"),
        ("wrong-dtype", "has dtype <f8, expected <f4"),
        ("nan", "holds NaN or infinity"),
        ("inf", "holds NaN or infinity"),
    ],
)
def test_a_reply_with_bad_arrays_is_rejected_and_the_run_finishes(
    link: Link, client: ControlClient, tmp_path: Path, mode: str, reason: str
) -> None:
    # Arrange: a good node and a node whose update goes wrong in one way
    app = _app(tmp_path / "app", "bad_reply_app", FEDAVG_SERVER_APP, CLIENT_APP)
    good = Node(link.fleet_address, tmp_path / "good", node_config={"mode": "good"})
    bad = Node(link.fleet_address, tmp_path / "bad", node_config={"mode": mode})
    with good, bad:
        _wait_connected(good)
        bad_id = _wait_connected(bad)

        # Act
        run = client.submit(app)
        events = _run_events(client, run.run_id)
        final = client.get_run(run.run_id)

    # Assert: the ServerApp's aggregator rejected the update, logged why, and went on
    errors = [e for e in events if e.kind == "reply.error"]
    assert [(e.node_id, e.data["code"]) for e in errors] == [(bad_id, int(ErrorCode.INVALID_REPLY))]
    assert reason in errors[0].data["reason"]
    assert final.status == run_pb2.RUN_STATUS_FINISHED, final.status_reason
    result = client.result(run.run_id)
    assert result is not None and result.arrays is not None
    np.testing.assert_array_equal(result.arrays["w"], np.ones(3, dtype=np.float32))


def test_a_reply_whose_array_entry_contradicts_its_payload_is_refused(
    link: Link,
    client: ControlClient,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    bystander: int,
) -> None:
    # Arrange: a message delivered to a node, whose reply declares a shape its pushed
    # payload does not have
    node_id, metadata = _register(fleet)
    run = link.state.create_run(HASH, {})
    grid = GrpcGrid(appio_channel, run.run_id, link.issue_run_secret(run.run_id))
    (message_id,) = grid.send([Message(RecordDict(), dst_node_id=node_id, message_type="train")])
    call = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata, timeout=WAIT_S)
    request = message_from_proto(next(call).message, {})
    update = ArrayRecord({"w": np.ones(3, dtype=np.float32)})
    reply = Message(RecordDict({"arrays": update}), reply_to=request)
    reply_proto, arrays = message_to_proto(reply.with_metadata(src_node_id=node_id))
    fleet.PushArrays((c for e in arrays.values() for c in chunk_messages(e)), metadata=metadata)
    entry = reply_proto.content.records[0].array_record.entries[0]
    entry.shape[:] = [4]

    # Act
    error = _fails(
        fleet.SendReply, fleet_pb2.SendReplyRequest(message=reply_proto), metadata=metadata
    )

    # Assert: refused with the reason, logged in the run, the message still open
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'w'" in (error.details() or "")
    events = [e for _, e in client.events(run.run_id, follow=False)]
    rejected = [e for e in events if e.kind == "reply.rejected"]
    assert [(e.node_id, e.data["reply_to"]) for e in rejected] == [(node_id, message_id)]
    assert rejected[0].data["code"] == int(ErrorCode.CODEC)
    assert link.state.message_status(message_id).value == "delivered"
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


def _delivered(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel, count: int
) -> tuple[int, list[tuple[int, tuple[tuple[str, str]], Message]]]:
    """A run, and ``count`` nodes, each holding the message the run sent it."""
    run = link.state.create_run(HASH, {})
    grid = GrpcGrid(appio_channel, run.run_id, link.issue_run_secret(run.run_id))
    nodes = [_register(fleet) for _ in range(count)]
    grid.send([Message(RecordDict(), dst_node_id=n, message_type="train") for n, _ in nodes])
    delivered = []
    for node_id, metadata in nodes:
        call = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata, timeout=WAIT_S)
        request = message_from_proto(next(call).message, {})
        delivered.append((node_id, metadata, request))
    return run.run_id, delivered


def _inline_reply(node_id: int, request: Message, update: np.ndarray) -> fleet_pb2.SendReplyRequest:
    return fleet_pb2.SendReplyRequest(message=inline_reply(node_id, request, update))


def _tampered_reply(
    node_id: int, request: Message, update: np.ndarray
) -> fleet_pb2.SendReplyRequest:
    return fleet_pb2.SendReplyRequest(message=tampered(inline_reply(node_id, request, update)))


def test_a_reply_whose_inline_array_does_not_match_its_hash_is_refused(
    link: Link,
    client: ControlClient,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    bystander: int,
) -> None:
    # Arrange: a reply whose inline bytes were changed after they were hashed
    run_id, [(node_id, metadata, request)] = _delivered(link, fleet, appio_channel, 1)
    message_id = request.metadata.message_id
    update = np.ones(3, dtype=np.float32)
    tampered = _tampered_reply(node_id, request, update)

    # Act
    error = _fails(fleet.SendReply, tampered, metadata=metadata)

    # Assert: refused with the reason, logged in the run, the message still open
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'w'" in (error.details() or "") and "hash" in (error.details() or "")
    events = [e for _, e in client.events(run_id, follow=False)]
    rejected = [e for e in events if e.kind == "reply.rejected"]
    assert [(e.node_id, e.data["reply_to"]) for e in rejected] == [(node_id, message_id)]
    assert rejected[0].data["code"] == int(ErrorCode.CODEC)
    assert link.state.message_status(message_id).value == "delivered"
    fleet.SendReply(_inline_reply(node_id, request, update), metadata=metadata)  # still open
    assert link.state.message_status(message_id).value == "replied"
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


def test_a_reply_carrying_more_than_the_inline_limit_is_refused(
    link: Link,
    client: ControlClient,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    bystander: int,
) -> None:
    # Arrange: a reply whose two arrays, each valid, together pass the 1 MiB inline limit
    run_id, [(node_id, metadata, request)] = _delivered(link, fleet, appio_channel, 1)
    message_id = request.metadata.message_id
    half = np.zeros(INLINE_ARRAY_BYTES // 8 + 16, dtype=np.float32)  # a bit over 512 KiB
    reply = Message(
        RecordDict({"a": ArrayRecord({"w": half}), "b": ArrayRecord({"v": half + 1})}),
        reply_to=request,
    )
    proto, _ = message_to_proto(reply.with_metadata(src_node_id=node_id), inline_bytes=2**30)
    assert all(e.data for r in proto.content.records for e in r.array_record.entries)

    # Act
    error = _fails(fleet.SendReply, fleet_pb2.SendReplyRequest(message=proto), metadata=metadata)

    # Assert: refused with the reason, logged, the message still open, the link up
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "inline" in (error.details() or "")
    events = [e for _, e in client.events(run_id, follow=False)]
    rejected = [e for e in events if e.kind == "reply.rejected"]
    assert [(e.node_id, e.data["code"]) for e in rejected] == [(node_id, int(ErrorCode.CODEC))]
    assert link.state.message_status(message_id).value == "delivered"
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


def test_replies_sent_at_once_are_each_stored_or_refused_on_their_own(
    link: Link, client: ControlClient, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: four nodes reply at the same moment; two replies are bad, one refused by
    # its check (inline bytes that are not the array), one by the state (another type)
    run_id, nodes = _delivered(link, fleet, appio_channel, 4)
    update = np.arange(3, dtype=np.float32)
    requests = [_inline_reply(node_id, request, update) for node_id, _, request in nodes]
    requests[1] = _tampered_reply(nodes[1][0], nodes[1][2], update)
    requests[2].message.metadata.message_type = "evaluate"
    start = threading.Barrier(len(nodes))
    outcomes: dict[int, object] = {}

    def send(position: int) -> None:
        start.wait(WAIT_S)
        try:
            outcomes[position] = fleet.SendReply(
                requests[position], metadata=nodes[position][1], timeout=WAIT_S
            )
        except grpc.RpcError as exc:
            outcomes[position] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(nodes))]

    # Act
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)

    # Assert: the good replies are stored, each bad one gets its own error and event
    ids = [request.metadata.message_id for _, _, request in nodes]
    statuses = [link.state.message_status(i).value for i in ids]
    assert statuses == ["replied", "delivered", "delivered", "replied"]
    for position in (0, 3):
        response = outcomes[position]
        assert isinstance(response, fleet_pb2.SendReplyResponse) and response.message_id
    for position in (1, 2):
        failure = outcomes[position]
        assert isinstance(failure, grpc.RpcError)
        assert failure.code() is grpc.StatusCode.INVALID_ARGUMENT
    events = [e for _, e in client.events(run_id, follow=False)]
    rejected = {e.data["reply_to"]: e for e in events if e.kind == "reply.rejected"}
    assert sorted(rejected) == sorted([ids[1], ids[2]])
    assert rejected[ids[1]].data["code"] == int(ErrorCode.CODEC)
    assert rejected[ids[1]].node_id == nodes[1][0]
    assert rejected[ids[2]].data["code"] == int(ErrorCode.INVALID_REPLY)
    assert rejected[ids[2]].node_id == nodes[2][0]
    _assert_link_up(fleet)


def test_a_truncated_chunk_stream_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, client: ControlClient, bystander: int
) -> None:
    _, metadata = _register(fleet)
    encoded = EncodedArray.from_array(np.arange(1000, dtype=np.float64))
    chunks = list(chunk_messages(encoded, chunk_size=1024))
    assert len(chunks) > 2

    error = _fails(fleet.PushArrays, iter(chunks[:-1]), metadata=metadata)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "truncated" in (error.details() or "")
    status = fleet.StatArrays(
        fleet_pb2.StatArraysRequest(sha256=[encoded.sha256]), metadata=metadata
    )
    assert not status.arrays[0].complete
    fleet.PushArrays(iter(chunks), metadata=metadata)  # the whole stream is taken afterwards
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


def test_a_truncated_bundle_is_refused(
    link: Link,
    client: ControlClient,
    tmp_path: Path,
    fleet: fleet_pb2_grpc.FleetStub,
    bystander: int,
) -> None:
    bundle = make_bundle(_app(tmp_path / "app", "quick_app", QUICK_SERVER_APP))
    digest = sha256_of(bundle)
    spec = control_pb2.RunSpec(bundle_sha256=digest, bundle_size=len(bundle))
    chunks = list(chunk_messages(bundle, sha256=digest, chunk_size=256))
    requests = [control_pb2.SubmitRunRequest(spec=spec)]
    requests += [control_pb2.SubmitRunRequest(bundle_chunk=c) for c in chunks[:-1]]
    with grpc.insecure_channel(link.control_address, options=channel_options()) as channel:
        error = _fails(control_pb2_grpc.ControlStub(channel).SubmitRun, iter(requests))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"payload {digest[:12]} truncated" in (error.details() or "")
    assert [r.run_id for r in client.list_runs()] == [bystander]
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


def test_a_payload_that_does_not_hash_to_its_name_is_refused(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, client: ControlClient, bystander: int
) -> None:
    _, metadata = _register(fleet)
    encoded = EncodedArray.from_array(np.arange(10, dtype=np.float32))
    other = EncodedArray.from_array(np.arange(10, 20, dtype=np.float32))
    # The bytes of one array under the name of another of the same size.
    chunks = list(chunk_messages(other, chunk_size=16))
    for chunk in chunks:
        chunk.sha256 = encoded.sha256

    error = _fails(fleet.PushArrays, iter(chunks), metadata=metadata)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert encoded.sha256[:12] in (error.details() or "")
    status = fleet.StatArrays(
        fleet_pb2.StatArraysRequest(sha256=[encoded.sha256]), metadata=metadata
    )
    assert not status.arrays[0].complete
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


def test_an_app_that_fails_to_import_fails_its_run_and_the_next_run_succeeds(
    client: ControlClient, tmp_path: Path, bystander: int
) -> None:
    broken = _app(tmp_path / "broken", "broken_import_app", BROKEN_SERVER_APP)
    good = _app(tmp_path / "good", "quick_app", QUICK_SERVER_APP)

    failed = client.submit(broken)
    failed_events = _run_events(client, failed.run_id)
    succeeded = client.submit(good)
    good_events = _run_events(client, succeeded.run_id)

    errors = [e for e in failed_events if e.kind == "run.error"]
    assert len(errors) == 1
    assert errors[0].data["code"] == int(ErrorCode.APP_LOAD)
    assert "this app does not import" in errors[0].data["reason"]
    final = client.get_run(failed.run_id)
    assert final.status == run_pb2.RUN_STATUS_FAILED
    assert "this app does not import" in final.status_reason
    assert [e.kind for e in good_events if e.kind == "quick.done"] == ["quick.done"]
    assert client.get_run(succeeded.run_id).status == run_pb2.RUN_STATUS_FINISHED
    _assert_going_on(client, bystander)


def test_a_refused_reply_on_the_reply_stream_gets_its_error_and_the_stream_goes_on(
    link: Link,
    client: ControlClient,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    bystander: int,
) -> None:
    # Arrange: on one stream, a reply whose inline bytes are not the array they claim,
    # a reply to a message the run never sent, then the good reply
    run_id, [(node_id, metadata, request)] = _delivered(link, fleet, appio_channel, 1)
    message_id = request.metadata.message_id
    update = np.ones(3, dtype=np.float32)
    tampered = _tampered_reply(node_id, request, update)
    stray = _inline_reply(node_id, request, update)
    stray.message.metadata.reply_to_message_id = "no-such-message"
    good = _inline_reply(node_id, request, update)

    # Act
    responses = list(
        fleet.SendReplies(iter([tampered, stray, good]), metadata=metadata, timeout=WAIT_S)
    )

    # Assert: each refusal answered with its code and reason, logged in the run; the good
    # reply written after them on the same stream stored
    outcomes = [r.WhichOneof("outcome") for r in responses]
    assert outcomes == ["error", "error", "message_id"]
    assert responses[0].error.code == int(ErrorCode.CODEC)
    assert "'w'" in responses[0].error.reason and "hash" in responses[0].error.reason
    assert responses[1].error.code == int(ErrorCode.MESSAGE_UNAVAILABLE)
    assert "no-such-message" in responses[1].error.reason
    assert responses[2].message_id
    assert link.state.message_status(message_id).value == "replied"
    events = [e for _, e in client.events(run_id, follow=False)]
    rejected = [e for e in events if e.kind == "reply.rejected"]
    assert [(e.node_id, e.data["reply_to"], e.data["code"]) for e in rejected] == [
        (node_id, message_id, int(ErrorCode.CODEC)),
        (node_id, "no-such-message", int(ErrorCode.MESSAGE_UNAVAILABLE)),
    ]
    assert [e.data["reason"] for e in rejected] == [r.error.reason for r in responses[:2]]
    _assert_link_up(fleet)
    _assert_going_on(client, bystander)


@pytest.mark.parametrize("token", [None, "999.secret", "not-a-token", "{node_id}.wrong"], ids=repr)
def test_a_reply_stream_with_a_bad_token_is_refused_with_unauthenticated(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel, token: str | None
) -> None:
    _, [(node_id, _, request)] = _delivered(link, fleet, appio_channel, 1)
    reply = _inline_reply(node_id, request, np.ones(3, dtype=np.float32))
    metadata = () if token is None else bearer_metadata(token.format(node_id=node_id))

    error = _fails(
        lambda: list(fleet.SendReplies(iter([reply]), metadata=metadata, timeout=WAIT_S))
    )

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert link.state.message_status(request.metadata.message_id).value == "delivered"
    _assert_link_up(fleet)


def test_a_malformed_request_ends_the_reply_stream_with_invalid_argument(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    _, [(node_id, metadata, request)] = _delivered(link, fleet, appio_channel, 1)
    good = _inline_reply(node_id, request, np.ones(3, dtype=np.float32))
    garbage = b"\xff\xff\xff\x0f not a protobuf message"
    responses: list[fleet_pb2.SendRepliesResponse] = []
    with grpc.insecure_channel(link.fleet_address, options=channel_options()) as channel:
        # Identity serializers: the bytes go on the wire as they are.
        stream = channel.stream_stream("/corolla.v1.Fleet/SendReplies")
        call = stream(iter([good.SerializeToString(), garbage]), metadata=metadata, timeout=WAIT_S)

        def read_all() -> None:
            for data in call:
                responses.append(fleet_pb2.SendRepliesResponse.FromString(data))

        error = _fails(read_all)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "corolla.v1.SendReplyRequest" in (error.details() or "")
    assert [r.WhichOneof("outcome") for r in responses] == ["message_id"]
    assert link.state.message_status(request.metadata.message_id).value == "replied"
    _assert_link_up(fleet)
