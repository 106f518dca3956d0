"""A node is online while it holds a Receive stream open; only the end of its last one
marks it offline, and a stream opened meanwhile puts it back online."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.runtime.link import LinkResources
from corolla.runtime.link._presence import Presence
from corolla.state import MemoryBlobStore, SqliteLinkState


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[LinkResources]:
    state = SqliteLinkState(":memory:")
    try:
        yield LinkResources.create(state, MemoryBlobStore(), tmp_path / "apps")
    finally:
        state.close()


def _online(shared: LinkResources, node_id: int) -> bool:
    return shared.state.get_node(node_id).online


def test_the_end_of_a_node_s_only_stream_marks_it_offline(shared: LinkResources) -> None:
    node_id = shared.state.register_node().node_id
    presence = Presence(shared)
    presence.opened(node_id)

    last = presence.closed(node_id)
    presence.disconnected(node_id)

    assert last and not _online(shared, node_id)
    leave = [e.event for e in shared.state.read_events(0) if e.event.kind == "node.leave"]
    assert [e.node_id for e in leave] == [node_id]


def test_the_end_of_an_older_stream_leaves_a_node_with_a_newer_one_online(
    shared: LinkResources,
) -> None:
    node_id = shared.state.register_node().node_id
    presence = Presence(shared)
    presence.opened(node_id)
    presence.opened(node_id)  # it reconnected before the link saw the first stream end

    assert not presence.closed(node_id)
    assert _online(shared, node_id)


def test_a_stream_opened_before_the_mark_was_written_keeps_the_node_online(
    shared: LinkResources,
) -> None:
    # Arrange: the old stream ended; the node's new one opens before the mark is written
    node_id = shared.state.register_node().node_id
    presence = Presence(shared)
    presence.opened(node_id)
    presence.closed(node_id)
    again = presence.opened(node_id)

    # Act
    presence.disconnected(node_id)

    # Assert
    assert not again and _online(shared, node_id)


def test_a_stream_opened_after_the_mark_puts_the_node_back_online(
    shared: LinkResources,
) -> None:
    # Arrange: the node is marked offline as its old stream ended
    node_id = shared.state.register_node().node_id
    presence = Presence(shared)
    presence.opened(node_id)
    presence.closed(node_id)
    presence.disconnected(node_id)

    # Act: its new stream opens
    again = presence.opened(node_id)
    if again:
        presence.back_online(node_id)

    # Assert
    assert again and _online(shared, node_id)
