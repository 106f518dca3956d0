"""What a run stored: its contents listed once each, released by its ServerApp as it goes,
and reply contents dropped once it ends."""

from __future__ import annotations

import pytest

from corolla.core import Event, MessageError
from corolla.state import (
    LinkState,
    RunInfo,
    RunStatus,
    RunStatusError,
    StoredMessage,
    UnknownMessageError,
)

from .doubles import digest, instruction, reply


def _in_row(request: StoredMessage, content: bytes) -> StoredMessage:
    answer = reply(request, content_hash=digest(content))
    return StoredMessage(answer.metadata, content_hash=digest(content), content=content)


def test_a_run_s_contents_are_listed_once_each_with_the_bytes_rows_keep(
    state: LinkState, run: RunInfo, node_id: int
) -> None:
    # Arrange: three messages sharing one content, two replies kept in their rows, one
    # reply whose content is a blob.
    messages = state.store_messages([instruction(run.run_id, node_id) for _ in range(3)])
    state.fetch_messages(node_id)
    request = instruction(run.run_id, node_id, message_id=messages[0])
    state.store_reply(_in_row(request, b"update one"))
    request = instruction(run.run_id, node_id, message_id=messages[1])
    state.store_reply(_in_row(request, b"update two"))
    request = instruction(run.run_id, node_id, message_id=messages[2])
    state.store_reply(reply(request, content_hash=digest(b"a blob")))

    # Act
    contents = list(state.run_contents(run.run_id))

    # Assert
    assert sorted(contents, key=lambda c: c[0]) == sorted(
        [
            (instruction(run.run_id, node_id).content_hash, None),
            (digest(b"update one"), b"update one"),
            (digest(b"update two"), b"update two"),
            (digest(b"a blob"), None),
        ],
        key=lambda c: c[0],
    )


def test_reply_contents_are_dropped_only_once_the_run_has_ended(
    state: LinkState, run: RunInfo, node_id: int
) -> None:
    (message_id,) = state.store_messages([instruction(run.run_id, node_id)])
    state.fetch_messages(node_id)
    state.store_reply(_in_row(instruction(run.run_id, node_id, message_id=message_id), b"update"))

    with pytest.raises(RunStatusError, match="has not ended"):
        state.clear_reply_contents(run.run_id)
    state.update_run_status(run.run_id, RunStatus.FINISHED)
    dropped = state.clear_reply_contents(run.run_id)
    again = state.clear_reply_contents(run.run_id)

    assert (dropped, again) == (1, 0)
    assert list(state.run_contents(run.run_id))[-1] == (digest(b"update"), None)
    (kept,) = state.get_replies(run.run_id, [message_id])
    assert kept.metadata.reply_to_message_id == message_id  # the row stays


def test_events_can_be_read_by_kind(state: LinkState, run: RunInfo) -> None:
    state.append_events(
        [Event("log", run.run_id, data={"line": "x"}), Event("run.result", run.run_id)]
    )

    results = state.read_events(run.run_id, kind="run.result")
    none = state.read_events(run.run_id, kind="no.such.kind")

    assert [e.event.kind for e in results] == ["run.result"]
    assert none == []


def _round(state: LinkState, run: RunInfo, node_id: int, model: bytes) -> list[str]:
    """Two messages sharing content ``model``, answered by a reply kept in its row and a
    reply whose content is a blob."""
    messages = state.store_messages(
        [instruction(run.run_id, node_id, content_hash=digest(model)) for _ in range(2)]
    )
    state.fetch_messages(node_id)
    first = instruction(run.run_id, node_id, message_id=messages[0])
    state.store_reply(_in_row(first, b"row " + model))
    second = instruction(run.run_id, node_id, message_id=messages[1])
    state.store_reply(reply(second, content_hash=digest(b"blob " + model)))
    return messages


def test_released_messages_give_their_contents_once_and_leave_the_live_contents(
    state: LinkState, run: RunInfo, node_id: int
) -> None:
    # Arrange: two rounds; the first is released.
    first = _round(state, run, node_id, b"model 1")
    _round(state, run, node_id, b"model 2")

    # Act
    released = state.release_messages(run.run_id, first)
    again = state.release_messages(run.run_id, first)

    # Assert: the first round's contents come back once, with the row's bytes...
    assert sorted(released) == sorted(
        [
            (digest(b"model 1"), None),
            (digest(b"row model 1"), b"row model 1"),
            (digest(b"blob model 1"), None),
        ]
    )
    assert again == []
    # ...and are no longer among what the live run may read, though all of them still
    # are for a collection of the whole run.
    assert sorted(state.run_contents(run.run_id, released=False)) == sorted(
        [
            (digest(b"model 2"), None),
            (digest(b"row model 2"), b"row model 2"),
            (digest(b"blob model 2"), None),
        ]
    )
    everything = {h for h, _ in state.run_contents(run.run_id)}
    assert digest(b"row model 1") in everything and digest(b"model 1") in everything


def test_a_released_message_s_reply_is_refused_and_its_row_content_can_be_dropped(
    state: LinkState, run: RunInfo, node_id: int
) -> None:
    first = _round(state, run, node_id, b"model 1")
    second = _round(state, run, node_id, b"model 2")

    state.release_messages(run.run_id, first[:1])
    not_released = state.drop_released_contents(run.run_id, second)
    dropped = state.drop_released_contents(run.run_id, first)
    again = state.drop_released_contents(run.run_id, first)

    assert (not_released, dropped, again) == (0, 1, 0)
    with pytest.raises(MessageError, match="released"):
        state.get_replies(run.run_id, first)
    # The row stays, its content gone: a later pass finds it as a blob that is not there.
    contents = list(state.run_contents(run.run_id))
    assert (digest(b"row model 1"), None) in contents
    assert (digest(b"row model 2"), b"row model 2") in contents
    assert [r.metadata.reply_to_message_id for r in state.get_replies(run.run_id, first[1:])] == [
        first[1]
    ]


def test_releasing_an_unknown_message_releases_nothing(
    state: LinkState, run: RunInfo, node_id: int
) -> None:
    first = _round(state, run, node_id, b"model 1")

    with pytest.raises(UnknownMessageError, match="no-such-message"):
        state.release_messages(run.run_id, [first[0], "no-such-message"])
    with pytest.raises(MessageError, match="not one str"):
        state.release_messages(run.run_id, first[0])

    assert len(state.get_replies(run.run_id, first)) == 2
