"""What a run stored: its contents listed once each, and reply contents dropped once it ends."""

from __future__ import annotations

import pytest

from corolla.core import Event
from corolla.state import LinkState, RunInfo, RunStatus, RunStatusError, StoredMessage

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
