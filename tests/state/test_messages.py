"""LinkState conformance: messages to nodes, delivery, replies, expiry."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import pytest

from corolla.core import ConfigError, Error, ErrorCode, MessageError
from corolla.state import (
    DeliveryStatus,
    LinkState,
    ReplyRejectedError,
    RunInfo,
    RunStatus,
    StoredMessage,
    UnknownMessageError,
    UnknownNodeError,
    UnknownRunError,
)

from .doubles import CONTENT, FakeClock, digest, instruction, reply


def _fetch_one(state: LinkState, node_id: int) -> StoredMessage:
    (message,) = state.fetch_messages(node_id)
    return message


def test_a_message_goes_to_its_node_once(state: LinkState, clock: FakeClock, run, node_id):
    (message_id,) = state.store_messages([instruction(run.run_id, node_id, ttl=30.0)])

    fetched = state.fetch_messages(node_id)

    assert len(message_id) == 32
    assert [m.metadata.message_id for m in fetched] == [message_id]
    md = fetched[0].metadata
    assert (md.run_id, md.src_node_id, md.dst_node_id) == (run.run_id, 0, node_id)
    assert (md.message_type, md.group_id, md.ttl, md.created_at) == ("train", "1", 30.0, clock.now)
    assert fetched[0].content_hash == CONTENT
    assert state.message_status(message_id) is DeliveryStatus.DELIVERED
    assert state.fetch_messages(node_id) == []


def test_fetch_returns_only_the_nodes_messages_oldest_first(state: LinkState, run, node_id):
    other = state.register_node().node_id
    ids = state.store_messages(
        [instruction(run.run_id, node_id, group_id=str(i)) for i in range(5)]
        + [instruction(run.run_id, other)]
    )

    first = state.fetch_messages(node_id, limit=2)
    rest = state.fetch_messages(node_id)

    assert [m.metadata.message_id for m in first + rest] == ids[:5]


def test_given_message_ids_and_times_are_kept(state: LinkState, clock: FakeClock, run, node_id):
    message = instruction(run.run_id, node_id, message_id="mine")
    sent_at = clock.now - 1.5
    message = dataclasses.replace(
        message, metadata=dataclasses.replace(message.metadata, created_at=sent_at)
    )

    assert state.store_messages([message]) == ["mine"]
    assert state.fetch_messages(node_id)[0].metadata.created_at == sent_at


def test_store_messages_names_an_unknown_run(state: LinkState, run, node_id):
    with pytest.raises(UnknownRunError, match="777"):
        state.store_messages([instruction(run.run_id, node_id), instruction(777, node_id)])

    assert state.fetch_messages(node_id) == []  # all or none


def test_store_messages_names_an_unknown_node(state: LinkState, run, node_id):
    with pytest.raises(UnknownNodeError, match="888"):
        state.store_messages([instruction(run.run_id, node_id), instruction(run.run_id, 888)])

    assert state.fetch_messages(node_id) == []


def test_store_messages_refuses_replies_errors_and_taken_ids(state: LinkState, run, node_id):
    (taken,) = state.store_messages([instruction(run.run_id, node_id, message_id="a")])
    as_reply = reply(instruction(run.run_id, node_id, message_id="a"))
    with_error = StoredMessage(instruction(run.run_id, node_id).metadata, error=Error(1, "x"))

    with pytest.raises(MessageError, match="store_reply"):
        state.store_messages([as_reply])
    with pytest.raises(MessageError, match="content"):
        state.store_messages([with_error])
    with pytest.raises(MessageError, match="already taken"):
        state.store_messages([instruction(run.run_id, node_id, message_id=taken)])
    with pytest.raises(MessageError, match="already taken"):
        state.store_messages([instruction(run.run_id, node_id, message_id="b")] * 2)


def test_a_message_to_an_offline_node_is_answered_at_once(state: LinkState, run, node_id):
    state.mark_node_offline(node_id)

    (message_id,) = state.store_messages([instruction(run.run_id, node_id)])

    (answer,) = state.get_replies(run.run_id, [message_id])
    assert answer.error is not None and answer.error.code == ErrorCode.NODE_UNAVAILABLE
    assert state.message_status(message_id) is DeliveryStatus.FAILED


def test_a_reply_is_stored_and_read_back(state: LinkState, run, node_id):
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)

    reply_id = state.store_reply(reply(request, content_hash=digest(b"update")))

    (stored,) = state.get_replies(run.run_id, [request.metadata.message_id])
    md = stored.metadata
    assert md.message_id == reply_id
    assert (md.reply_to_message_id, md.src_node_id, md.dst_node_id) == (
        request.metadata.message_id,
        node_id,
        0,
    )
    assert stored.content_hash == digest(b"update")
    assert state.message_status(request.metadata.message_id) is DeliveryStatus.REPLIED


def _traced(message: StoredMessage, traceparent: str) -> StoredMessage:
    metadata = dataclasses.replace(message.metadata, traceparent=traceparent)
    return dataclasses.replace(message, metadata=metadata)


def test_messages_and_replies_keep_their_trace_context(state: LinkState, run, node_id):
    # Arrange: two messages with a trace context each, and one without
    first, second, answered = (
        f"00-0af7651916cd43dd8448eb211c80319c-{span:016x}-01" for span in (1, 2, 3)
    )
    state.store_messages([_traced(instruction(run.run_id, node_id), first)])
    state.store_messages([_traced(instruction(run.run_id, node_id), second)])
    state.store_messages([instruction(run.run_id, node_id)])

    # Act: the node answers the first; the link answers the others when it goes offline
    request, unanswered, untraced = state.fetch_messages(node_id)
    state.store_reply(_traced(reply(request), answered))
    state.mark_node_offline(node_id)

    # Assert: each read back with its own; the link's answer carries its message's
    contexts = [m.metadata.traceparent for m in (request, unanswered, untraced)]
    assert contexts == [first, second, ""]
    ids = [m.metadata.message_id for m in (request, unanswered, untraced)]
    replies = state.get_replies(run.run_id, ids)
    assert [r.metadata.traceparent for r in replies] == [answered, second, ""]
    assert replies[1].error is not None and replies[1].error.code == ErrorCode.NODE_UNAVAILABLE


def test_a_reply_keeps_its_inline_content(state: LinkState, run, node_id):
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)
    content = b"serialized records"
    inline = dataclasses.replace(reply(request, content_hash=digest(content)), content=content)

    state.store_reply(inline)
    state.store_reply(inline)  # a retry is recognised by its hash

    (stored,) = state.get_replies(run.run_id, [request.metadata.message_id])
    assert (stored.content_hash, stored.content) == (digest(content), content)


def test_a_message_to_nodes_cannot_carry_inline_content(state: LinkState, run, node_id):
    message = dataclasses.replace(instruction(run.run_id, node_id), content=b"records")

    with pytest.raises(MessageError, match="blob store"):
        state.store_messages([message])


def test_an_error_reply_is_stored(state: LinkState, run, node_id):
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)
    error = Error(int(ErrorCode.CLIENT_APP_RAISED), "ZeroDivisionError")

    state.store_reply(reply(request, error=error))

    (stored,) = state.get_replies(run.run_id, [request.metadata.message_id])
    assert (stored.error, stored.content_hash) == (error, None)


def test_an_identical_reply_again_is_accepted_and_stored_once(state: LinkState, run, node_id):
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)

    first = state.store_reply(reply(request, message_id="r1"))
    again = state.store_reply(reply(request, message_id="r1"))
    renamed = state.store_reply(reply(request, message_id="r2"))

    assert first == again == renamed == "r1"
    assert len(state.get_replies(run.run_id, [request.metadata.message_id])) == 1


def test_a_different_second_reply_is_rejected(state: LinkState, run, node_id):
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)
    state.store_reply(reply(request))

    with pytest.raises(ReplyRejectedError, match="different reply") as info:
        state.store_reply(reply(request, content_hash=digest(b"another update")))

    assert info.value.code == ErrorCode.INVALID_REPLY
    (stored,) = state.get_replies(run.run_id, [request.metadata.message_id])
    assert stored.content_hash == digest(b"update")


def test_a_reply_to_an_undelivered_message_is_rejected(state: LinkState, run, node_id):
    (message_id,) = state.store_messages([instruction(run.run_id, node_id, message_id="m")])

    with pytest.raises(ReplyRejectedError, match="not delivered"):
        state.store_reply(reply(instruction(run.run_id, node_id, message_id=message_id)))


def test_a_reply_from_another_node_is_rejected(state: LinkState, run, node_id):
    intruder = state.register_node().node_id
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)

    with pytest.raises(ReplyRejectedError, match=f"sent to node {node_id}, not to node {intruder}"):
        state.store_reply(reply(request, src_node_id=intruder))


def test_a_reply_of_another_type_is_rejected(state: LinkState, run, node_id):
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)

    with pytest.raises(ReplyRejectedError, match="type"):
        state.store_reply(reply(request, message_type="evaluate"))


def test_a_reply_to_an_unknown_message_or_run_is_rejected(state: LinkState, run, node_id):
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)

    with pytest.raises(UnknownMessageError, match="nope"):
        state.store_reply(reply(instruction(run.run_id, node_id, message_id="nope")))
    with pytest.raises(UnknownMessageError):
        state.store_reply(reply(request, run_id=run.run_id + 1))
    with pytest.raises(MessageError, match="reply_to"):
        state.store_reply(request)


def test_a_taken_reply_id_is_refused(state: LinkState, run, node_id):
    state.store_messages([instruction(run.run_id, node_id)] * 2)
    first, second = state.fetch_messages(node_id)
    state.store_reply(reply(first, message_id="r"))

    with pytest.raises(MessageError, match="already taken"):
        state.store_reply(reply(second, message_id="r"))


def test_get_replies_in_the_order_stored(state: LinkState, run, node_id):
    ids = state.store_messages([instruction(run.run_id, node_id)] * 3)
    requests = state.fetch_messages(node_id)
    for request in reversed(requests):
        state.store_reply(reply(request))

    replies = state.get_replies(run.run_id, ids)

    assert [r.metadata.reply_to_message_id for r in replies] == list(reversed(ids))
    assert state.get_replies(run.run_id, ids[:1]) == replies[-1:]
    assert state.get_replies(run.run_id, []) == []


def test_get_replies_names_an_unknown_message(state: LinkState, run: RunInfo, bundle_hash, node_id):
    other_run = state.create_run(bundle_hash).run_id
    (message_id,) = state.store_messages([instruction(run.run_id, node_id)])

    with pytest.raises(UnknownMessageError, match="ghost"):
        state.get_replies(run.run_id, [message_id, "ghost"])
    with pytest.raises(UnknownMessageError, match=message_id):
        state.get_replies(other_run, [message_id])
    with pytest.raises(UnknownRunError):
        state.get_replies(run.run_id + 1, [message_id])
    with pytest.raises(MessageError):
        state.get_replies(run.run_id, message_id)


def test_get_replies_handles_many_ids(state: LinkState, run, node_id):
    ids = state.store_messages([instruction(run.run_id, node_id)] * 1200)
    for request in state.fetch_messages(node_id):
        state.store_reply(reply(request))

    assert len(state.get_replies(run.run_id, ids)) == 1200


def test_replies_since_a_cursor_come_once_in_the_order_stored(
    state: LinkState, run: RunInfo, bundle_hash, node_id
):
    other = state.create_run(bundle_hash)
    state.update_run_status(other.run_id, RunStatus.STARTING)
    state.update_run_status(other.run_id, RunStatus.RUNNING)
    ids = state.store_messages([instruction(run.run_id, node_id)] * 3)
    (elsewhere,) = state.store_messages([instruction(other.run_id, node_id)])
    first, second, third, foreign = state.fetch_messages(node_id)
    assert state.replies_since(run.run_id) == ([], 0)
    state.store_reply(reply(second))
    state.store_reply(reply(foreign))
    state.store_reply(reply(first))

    replies, cursor = state.replies_since(run.run_id)
    nothing_new, same = state.replies_since(run.run_id, cursor)
    state.store_reply(reply(third))
    newer, _ = state.replies_since(run.run_id, cursor)

    assert [r.metadata.reply_to_message_id for r in replies] == [ids[1], ids[0]]
    assert (nothing_new, same) == ([], cursor)
    assert [r.metadata.reply_to_message_id for r in newer] == [ids[2]]
    assert [r.metadata.reply_to_message_id for r in state.replies_since(other.run_id)[0]] == [
        elsewhere
    ]


def test_the_reply_cursor_follows_from_now_on(state: LinkState, run, node_id):
    state.store_messages([instruction(run.run_id, node_id)] * 2)
    first, second = state.fetch_messages(node_id)
    state.store_reply(reply(first))

    cursor = state.reply_cursor()
    state.store_reply(reply(second))

    (only,) = state.replies_since(run.run_id, cursor)[0]
    assert only.metadata.reply_to_message_id == second.metadata.message_id


def test_replies_since_checks_its_arguments(state: LinkState, run):
    with pytest.raises(UnknownRunError):
        state.replies_since(run.run_id + 1)
    with pytest.raises(ConfigError, match="cursor"):
        state.replies_since(run.run_id, -1)


def test_message_status_of_an_unknown_message(state: LinkState):
    with pytest.raises(UnknownMessageError):
        state.message_status("missing")


def test_expiry_answers_messages_past_their_ttl(state: LinkState, clock: FakeClock, run, node_id):
    taken, waiting, young = state.store_messages(
        [
            instruction(run.run_id, node_id, ttl=10.0),
            instruction(run.run_id, node_id, ttl=10.0),
            instruction(run.run_id, node_id, ttl=100.0),
        ]
    )
    state.fetch_messages(node_id, limit=1)
    clock.advance(10)

    expired = state.expire_messages()

    assert expired == [taken, waiting]
    codes = [r.error.code for r in state.get_replies(run.run_id, [taken, waiting]) if r.error]
    assert codes == [ErrorCode.REPLY_UNAVAILABLE, ErrorCode.MESSAGE_UNAVAILABLE]
    assert state.message_status(taken) is DeliveryStatus.EXPIRED
    assert state.message_status(young) is DeliveryStatus.PENDING
    assert state.expire_messages() == []


def test_an_expired_message_is_not_delivered(state: LinkState, clock: FakeClock, run, node_id):
    state.store_messages([instruction(run.run_id, node_id, ttl=5.0)])
    clock.advance(5)

    assert state.fetch_messages(node_id) == []


def test_a_reply_after_the_ttl_is_rejected(state: LinkState, clock: FakeClock, run, node_id):
    state.store_messages([instruction(run.run_id, node_id, ttl=5.0)])
    request = _fetch_one(state, node_id)
    clock.advance(5)

    with pytest.raises(ReplyRejectedError, match="expired"):
        state.store_reply(reply(request))
    state.expire_messages()
    with pytest.raises(ReplyRejectedError, match="answered by the link"):
        state.store_reply(reply(request))


def test_a_reply_after_the_node_was_marked_offline_is_rejected(
    state: LinkState, clock: FakeClock, run, node_id
):
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)
    state.mark_node_offline(node_id)

    with pytest.raises(ReplyRejectedError, match="offline"):
        state.store_reply(reply(request))


def test_fetch_for_an_unknown_node_or_with_a_bad_limit(state: LinkState, node_id):
    with pytest.raises(UnknownNodeError):
        state.fetch_messages(node_id + 1)
    with pytest.raises(ValueError, match="limit"):
        state.fetch_messages(node_id, limit=0)


def test_abandoning_a_runs_messages_answers_the_open_ones_only(
    state: LinkState, clock: FakeClock, run, node_id
):
    answered, taken, waiting = state.store_messages(
        [instruction(run.run_id, node_id) for _ in range(3)]
    )
    (first,) = state.fetch_messages(node_id, limit=1)
    assert first.metadata.message_id == answered
    state.store_reply(reply(first))
    state.fetch_messages(node_id, limit=1)
    other = state.create_run(digest(b"other"), {})
    (elsewhere,) = state.store_messages([instruction(other.run_id, node_id)])

    abandoned = state.abandon_run_messages(run.run_id, "the ServerApp restarted")

    assert abandoned == [taken, waiting]
    replies = state.get_replies(run.run_id, [answered, taken, waiting])
    assert not replies[0].error
    for r in replies[1:]:
        assert r.error is not None
        assert r.error.code == ErrorCode.MESSAGE_UNAVAILABLE
        assert "restarted" in r.error.reason
    assert state.message_status(taken) is DeliveryStatus.FAILED
    assert state.message_status(elsewhere) is DeliveryStatus.PENDING
    assert state.fetch_messages(node_id) != []  # only the other run's message is left
    assert state.abandon_run_messages(run.run_id, "again") == []


def test_abandoning_the_messages_of_an_unknown_run_fails(state: LinkState, run):
    with pytest.raises(UnknownRunError):
        state.abandon_run_messages(run.run_id + 1, "gone")


# Batches: what the link gathers from many nodes at once

#: A backend's own batch methods, and LinkState's defaults (one call per item) on it.
BATCHES = pytest.mark.parametrize("own", [True, False], ids=["own", "default"])


def _store_replies(state: LinkState, own: bool) -> Callable[[list[StoredMessage]], list[Any]]:
    return state.store_replies if own else functools.partial(LinkState.store_replies, state)


def _fetch_messages_many(state: LinkState, own: bool) -> Callable[[list[int]], dict[int, Any]]:
    if own:
        return state.fetch_messages_many
    return functools.partial(LinkState.fetch_messages_many, state)


@BATCHES
def test_store_replies_stores_each_reply_or_gives_its_error(
    state: LinkState, run, node_id, own: bool
):
    state.store_messages([instruction(run.run_id, node_id)] * 3)
    first, second, unanswered = state.fetch_messages(node_id)
    batch = [
        reply(first, message_id="r1"),
        reply(instruction(run.run_id, node_id, message_id="nope")),
        reply(second, message_id="r2"),
        first,  # not a reply: it names no message it answers
        reply(unanswered, message_id="r1"),  # a taken reply id
    ]

    stored = _store_replies(state, own)(batch)

    assert stored[0] == "r1" and stored[2] == "r2"
    assert isinstance(stored[1], UnknownMessageError) and "nope" in str(stored[1])
    assert isinstance(stored[3], MessageError) and "reply_to" in str(stored[3])
    assert isinstance(stored[4], MessageError) and "already taken" in str(stored[4])
    assert len(stored) == len(batch)
    ids = [first.metadata.message_id, second.metadata.message_id]
    replies = state.get_replies(run.run_id, [*ids, unanswered.metadata.message_id])
    assert [(r.metadata.message_id, r.metadata.reply_to_message_id) for r in replies] == [
        ("r1", ids[0]),
        ("r2", ids[1]),
    ]
    assert state.message_status(ids[0]) is DeliveryStatus.REPLIED
    assert state.message_status(unanswered.metadata.message_id) is DeliveryStatus.DELIVERED


@BATCHES
def test_store_replies_sees_the_replies_before_it_in_the_batch(
    state: LinkState, run, node_id, own: bool
):
    state.store_messages([instruction(run.run_id, node_id)])
    request = _fetch_one(state, node_id)

    stored = _store_replies(state, own)(
        [
            reply(request, message_id="r1"),
            reply(request, message_id="r1"),  # a retry: the same reply again
            reply(request, content_hash=digest(b"another update")),
        ]
    )

    assert stored[:2] == ["r1", "r1"]
    assert isinstance(stored[2], ReplyRejectedError)
    (kept,) = state.get_replies(run.run_id, [request.metadata.message_id])
    assert kept.content_hash == digest(b"update")


@BATCHES
def test_store_replies_of_nothing(state: LinkState, own: bool):
    assert _store_replies(state, own)([]) == []


@BATCHES
def test_fetch_messages_many_hands_out_each_nodes_messages_once(
    state: LinkState, run, node_id, own: bool
):
    other = state.register_node().node_id
    quiet = state.register_node().node_id
    unknown = max(node_id, other, quiet) + 1
    mine = state.store_messages([instruction(run.run_id, node_id)] * 2)
    theirs = state.store_messages([instruction(run.run_id, other)])
    fetch_messages_many = _fetch_messages_many(state, own)

    fetched = fetch_messages_many([node_id, unknown, other, node_id, quiet])

    assert set(fetched) == {node_id, unknown, other, quiet}
    assert [m.metadata.message_id for m in fetched[node_id]] == mine
    assert [m.metadata.message_id for m in fetched[other]] == theirs
    assert fetched[quiet] == []
    assert isinstance(fetched[unknown], UnknownNodeError)
    assert {state.message_status(i) for i in mine + theirs} == {DeliveryStatus.DELIVERED}
    assert fetch_messages_many([node_id, other]) == {node_id: [], other: []}


@BATCHES
def test_fetch_messages_many_of_nothing(state: LinkState, own: bool):
    assert _fetch_messages_many(state, own)([]) == {}


@BATCHES
def test_fetch_messages_many_hands_out_each_nodes_messages_in_the_order_stored(
    state: LinkState, run, node_id, own: bool
):
    other = state.register_node().node_id
    # Interleaved: the messages of both nodes alternate in the order stored.
    ids = state.store_messages([instruction(run.run_id, n) for n in [node_id, other] * 3])

    fetched = _fetch_messages_many(state, own)([other, node_id])

    assert [m.metadata.message_id for m in fetched[node_id]] == ids[0::2]
    assert [m.metadata.message_id for m in fetched[other]] == ids[1::2]


@BATCHES
def test_fetch_messages_many_leaves_expired_messages_out(
    state: LinkState, clock: FakeClock, run, node_id, own: bool
):
    expiring, lasting = state.store_messages(
        [instruction(run.run_id, node_id, ttl=5.0), instruction(run.run_id, node_id, ttl=60.0)]
    )
    clock.advance(5)

    fetched = _fetch_messages_many(state, own)([node_id])

    assert [m.metadata.message_id for m in fetched[node_id]] == [lasting]
    assert state.message_status(expiring) is DeliveryStatus.PENDING
    assert state.expire_messages() == [expiring]


@BATCHES
def test_fetch_messages_many_handles_more_nodes_than_one_query_takes(
    state: LinkState, run, node_id, own: bool
):
    # Arrange: 1,200 node ids (the SQLite backend asks about 500 at a time), the known
    # nodes among them at the start, in the middle and at the end
    others = [state.register_node().node_id for _ in range(2)]
    known = [node_id, *others]
    unknown = [i for i in range(1, 1200) if i not in known][:1197]
    wanted = [node_id, *unknown[:700], others[0], *unknown[700:], others[1]]
    assert len(wanted) == 1200
    ids = {n: state.store_messages([instruction(run.run_id, n)] * 2) for n in known}

    # Act
    fetched = _fetch_messages_many(state, own)(wanted)

    # Assert
    assert set(fetched) == set(wanted)
    for n in known:
        assert [m.metadata.message_id for m in fetched[n]] == ids[n]
    assert all(isinstance(fetched[n], UnknownNodeError) for n in unknown)
    delivered = {state.message_status(i) for n in known for i in ids[n]}
    assert delivered == {DeliveryStatus.DELIVERED}
