"""ReplyStream: a node's replies written on one SendReplies stream, against a real link."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from corolla.core import CodecError, ErrorCode, Message, RecordDict
from corolla.runtime import GrpcGrid, Link
from corolla.runtime.node._reply_stream import ReplyStream
from corolla.transport import (
    TransportError,
    bearer_metadata,
    channel_options,
    fleet_pb2,
    fleet_pb2_grpc,
    message_from_proto,
    message_pb2,
)

from ...transport.servers import serve
from ..replies import inline_reply, tampered

WAIT_S = 30.0
HASH = "0" * 64

Metadata = tuple[tuple[str, str]]


def _delivered(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel, count: int
) -> tuple[GrpcGrid, int, Metadata, list[Message]]:
    """A run's grid, and a node holding the ``count`` messages the run sent it."""
    run = link.state.create_run(HASH, {})
    grid = GrpcGrid(appio_channel, run.run_id, link.issue_run_secret(run.run_id))
    registered = fleet.RegisterNode(fleet_pb2.RegisterNodeRequest())
    metadata = bearer_metadata(registered.token)
    ids = grid.send(
        [
            Message(RecordDict(), dst_node_id=registered.node_id, message_type="train")
            for _ in range(count)
        ]
    )
    # The stream stays open until the test ends (see the ``fleet`` fixture).
    call = fleet.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata, timeout=WAIT_S)
    received = {p.metadata.message_id: p for p in (next(call).message for _ in range(count))}
    requests = [message_from_proto(received[message_id], {}) for message_id in ids]
    return grid, registered.node_id, metadata, requests


@pytest.fixture
def opened() -> Iterator[list[ReplyStream]]:
    """The reply streams a test opens, closed after it."""
    streams: list[ReplyStream] = []
    yield streams
    for replies in streams:
        replies.close()


def test_send_returns_the_id_the_link_stored_the_reply_under(
    link: Link,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    opened: list[ReplyStream],
) -> None:
    grid, node_id, metadata, requests = _delivered(link, fleet, appio_channel, 2)
    replies = ReplyStream(fleet, metadata)
    opened.append(replies)
    updates = [np.full(3, position, dtype=np.float32) for position in range(2)]

    sent = [replies.send(inline_reply(node_id, r, u)) for r, u in zip(requests, updates)]

    ids = [r.metadata.message_id for r in requests]
    stored = {r.metadata.message_id: r for r in grid.receive(ids, timeout=WAIT_S)}
    assert sorted(stored) == sorted(sent) and len(set(sent)) == 2
    for message_id, reply_id, update in zip(ids, sent, updates):
        assert stored[reply_id].metadata.reply_to_message_id == message_id
        np.testing.assert_array_equal(stored[reply_id].content["arrays"]["w"], update)


def test_a_refused_reply_raises_its_error_and_the_next_send_works(
    link: Link,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    opened: list[ReplyStream],
) -> None:
    # Arrange: a reply whose inline bytes are not the array they claim, one to a message
    # the run never sent, and the good reply
    _, node_id, metadata, [request] = _delivered(link, fleet, appio_channel, 1)
    update = np.ones(3, dtype=np.float32)
    altered = tampered(inline_reply(node_id, request, update))
    stray = inline_reply(node_id, request, update)
    stray.metadata.reply_to_message_id = "no-such-message"
    replies = ReplyStream(fleet, metadata)
    opened.append(replies)

    # Act / Assert: each refusal raised as the error the link gave, the stream going on
    with pytest.raises(CodecError, match="hash"):
        replies.send(altered)
    with pytest.raises(TransportError, match="no-such-message") as unknown:
        replies.send(stray)
    reply_id = replies.send(inline_reply(node_id, request, update))

    assert unknown.value.code == ErrorCode.MESSAGE_UNAVAILABLE
    assert unknown.value.status == "NOT_FOUND"
    assert not unknown.value.retryable
    assert reply_id
    assert link.state.message_status(request.metadata.message_id).value == "replied"


def test_a_stream_with_a_bad_token_raises_unauthenticated(
    link: Link,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    opened: list[ReplyStream],
) -> None:
    _, node_id, _, [request] = _delivered(link, fleet, appio_channel, 1)
    replies = ReplyStream(fleet, bearer_metadata(f"{node_id}.wrong"))
    opened.append(replies)

    with pytest.raises(TransportError) as caught:
        replies.send(inline_reply(node_id, request, np.ones(3, dtype=np.float32)))

    assert (caught.value.status, caught.value.code) == (
        "UNAUTHENTICATED",
        ErrorCode.UNAUTHENTICATED,
    )
    assert not caught.value.retryable
    assert link.state.message_status(request.metadata.message_id).value == "delivered"


def test_a_send_after_the_link_stopped_raises_a_retryable_transport_error(
    link: Link,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    opened: list[ReplyStream],
) -> None:
    _, node_id, metadata, requests = _delivered(link, fleet, appio_channel, 2)
    replies = ReplyStream(fleet, metadata)
    opened.append(replies)
    replies.send(inline_reply(node_id, requests[0], np.ones(3, dtype=np.float32)))

    link.stop()
    with pytest.raises(TransportError) as caught:
        replies.send(inline_reply(node_id, requests[1], np.ones(3, dtype=np.float32)))

    assert caught.value.retryable
    assert caught.value.status == "UNAVAILABLE"
    assert isinstance(caught.value.__cause__, grpc.RpcError)


class _EndingFleet(fleet_pb2_grpc.FleetServicer):
    """Ends every SendReplies stream at once, without an answer or an error."""

    def SendReplies(self, request_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield from ()


def test_a_send_on_a_stream_the_link_ended_raises_a_retryable_transport_error() -> None:
    register = lambda s: fleet_pb2_grpc.add_FleetServicer_to_server(_EndingFleet(), s)  # noqa: E731
    with (
        serve(register) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as channel,
    ):
        replies = ReplyStream(fleet_pb2_grpc.FleetStub(channel), bearer_metadata("1.secret"))
        try:
            with pytest.raises(TransportError, match="ended the reply stream") as caught:
                replies.send(message_pb2.Message())
        finally:
            replies.close()

    assert caught.value.retryable
    assert (caught.value.status, caught.value.code) == ("UNAVAILABLE", ErrorCode.TRANSPORT)


def test_closing_twice_is_fine_and_a_send_after_closing_fails(
    link: Link,
    fleet: fleet_pb2_grpc.FleetStub,
    appio_channel: grpc.Channel,
    opened: list[ReplyStream],
) -> None:
    _, node_id, metadata, [request] = _delivered(link, fleet, appio_channel, 1)
    reply = inline_reply(node_id, request, np.ones(3, dtype=np.float32))
    closed = ReplyStream(fleet, metadata)

    closed.close()
    closed.close()
    with pytest.raises(TransportError) as caught:
        closed.send(reply)

    # Closed here, not broken: a cancelled call, which retrying on it cannot mend.
    assert caught.value.status == "CANCELLED"
    assert not caught.value.retryable
    assert link.state.message_status(request.metadata.message_id).value == "delivered"
    # The link is none the worse: a new stream takes the reply.
    reopened = ReplyStream(fleet, metadata)
    opened.append(reopened)
    assert reopened.send(reply)
    assert link.state.message_status(request.metadata.message_id).value == "replied"
