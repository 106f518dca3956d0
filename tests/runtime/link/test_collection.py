"""Collecting what a live run released and what an ended run named: what only they named
goes, what the link keeps stays."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from corolla.core import ArrayRecord, Event, Metadata, RecordDict
from corolla.runtime import ManualClock
from corolla.runtime.link import LinkResources
from corolla.runtime.link._collection import (
    COLLECTED,
    collect_ended_runs,
    collect_released,
    collect_run,
)
from corolla.runtime.link._names import USER_NAMER, node_namer, run_namer
from corolla.state import (
    DirectoryBlobStore,
    RunStatus,
    SqliteLinkState,
    StorageError,
    StoredMessage,
)
from corolla.transport import record_dict_to_proto, sha256_of


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[LinkResources]:
    state = SqliteLinkState(tmp_path / "state.db")
    yield LinkResources.create(
        state, DirectoryBlobStore(tmp_path / "blobs"), tmp_path / "apps", clock=ManualClock()
    )
    state.close()


def _later(shared: LinkResources, seconds: float = 1.0) -> None:
    """Move the link's clock on."""
    clock = shared.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)


def _past_the_grace(shared: LinkResources) -> None:
    """Move the link's clock past the time names hold blobs."""
    _later(shared, shared.names.grace_s + 1.0)


def _content(shared: LinkResources, value: float) -> tuple[bytes, str]:
    """A stored record naming one array blob: its serialized bytes and the array's hash."""
    arrays = ArrayRecord({"w": np.full(1000, value, dtype=np.float32)})
    proto, payloads = record_dict_to_proto(RecordDict({"arrays": arrays}))
    for sha256, encoded in payloads.items():
        shared.blobs.put_stream(encoded.segments(), expected_hash=sha256)
    (array_hash,) = payloads
    return proto.SerializeToString(deterministic=True), array_hash


def _running(shared: LinkResources, bundle: bytes) -> int:
    run = shared.state.create_run(shared.blobs.put(bundle), {})
    shared.state.update_run_status(run.run_id, RunStatus.STARTING)
    shared.state.update_run_status(run.run_id, RunStatus.RUNNING)
    return run.run_id


def _send(shared: LinkResources, run_id: int, node_id: int, content: bytes) -> str:
    metadata = Metadata(
        run_id=run_id,
        message_id="",
        src_node_id=0,
        dst_node_id=node_id,
        reply_to_message_id="",
        group_id="1",
        message_type="train",
        ttl=600.0,
    )
    stored = StoredMessage(metadata, content_hash=shared.blobs.put(content))
    (message_id,) = shared.state.store_messages([stored])
    return message_id


def _answer(
    shared: LinkResources, run_id: int, node_id: int, message_id: str, content: bytes, *, row: bool
) -> None:
    metadata = Metadata(
        run_id=run_id,
        message_id="",
        src_node_id=node_id,
        dst_node_id=0,
        reply_to_message_id=message_id,
        group_id="1",
        message_type="train",
        ttl=600.0,
    )
    if row:
        stored = StoredMessage(metadata, content_hash=sha256_of(content), content=content)
    else:
        stored = StoredMessage(metadata, content_hash=shared.blobs.put(content))
    shared.state.store_reply(stored)


def test_an_ended_run_leaves_only_what_the_link_keeps(
    shared: LinkResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: run A ends; run B, still running, was sent A's first model too.
    state, blobs = shared.state, shared.blobs
    node = state.register_node(heartbeat_interval=10.0).node_id
    run_a, run_b = _running(shared, b"bundle a"), _running(shared, b"bundle b")
    shared_model, shared_array = _content(shared, 1.0)
    own_model, own_array = _content(shared, 2.0)
    first = _send(shared, run_a, node, shared_model)
    second = _send(shared, run_a, node, own_model)
    _send(shared, run_b, node, shared_model)
    state.fetch_messages(node)
    row_update, row_array = _content(shared, 3.0)
    blob_update, blob_array = _content(shared, 4.0)
    _answer(shared, run_a, node, first, row_update, row=True)
    _answer(shared, run_a, node, second, blob_update, row=False)
    checkpoint, checkpoint_array = _content(shared, 5.0)
    state.save_checkpoint(run_a, 1, blobs.put(checkpoint))
    _, result_array = _content(shared, 6.0)
    state.append_event(Event("run.result", run_a, data={"arrays": [{"sha256": result_array}]}))
    state.update_run_status(run_a, RunStatus.FINISHED)

    # Act
    done = collect_run(shared, run_a)

    # Assert
    gone = [own_array, row_array, blob_array, sha256_of(own_model), sha256_of(blob_update)]
    kept = [
        shared_array,  # run B's message names it
        sha256_of(shared_model),
        checkpoint_array,
        sha256_of(checkpoint),
        result_array,
        sha256_of(b"bundle a"),
        sha256_of(b"bundle b"),
    ]
    assert [h for h in gone if blobs.exists(h)] == []
    assert [h for h in kept if not blobs.exists(h)] == []
    assert (done.blobs, done.reply_contents, done.kept_named) == (len(gone), 1, 0)
    assert done.bytes > 3 * 4_000  # three arrays of 1,000 float32 and two records


def test_a_blob_named_lately_is_collected_once_its_grace_is_over(
    shared: LinkResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: an ended run whose reply names an array a client was just told of.
    state, blobs = shared.state, shared.blobs
    node = state.register_node(heartbeat_interval=10.0).node_id
    run = _running(shared, b"bundle")
    model, _ = _content(shared, 1.0)
    message = _send(shared, run, node, model)
    state.fetch_messages(node)
    update, update_array = _content(shared, 2.0)
    _answer(shared, run, node, message, update, row=True)
    shared.names.mark_named([update_array], node_namer(node))
    state.update_run_status(run, RunStatus.FINISHED)

    # Act
    first = collect_run(shared, run)
    kept_while_named = blobs.exists(update_array)
    _past_the_grace(shared)
    later = collect_ended_runs(shared)
    nothing_left = collect_ended_runs(shared)

    # Assert
    assert first.kept_named == 1 and kept_while_named
    assert state.read_events(run, kind=COLLECTED)  # recorded once nothing was left
    assert later.blobs == 1 and not blobs.exists(update_array)
    assert nothing_left.blobs == 0 and nothing_left.reply_contents == 0


def test_a_live_run_is_not_collected(shared: LinkResources) -> None:
    run = _running(shared, b"bundle")

    with pytest.raises(Exception, match="has not ended"):
        collect_run(shared, run)


def test_what_only_the_ended_run_s_server_app_named_lately_goes_at_once(
    shared: LinkResources,
) -> None:
    state, blobs = shared.state, shared.blobs
    node = state.register_node(heartbeat_interval=10.0).node_id
    run = _running(shared, b"bundle")
    model, model_array = _content(shared, 1.0)
    _send(shared, run, node, model)
    shared.names.mark_named([model_array], run_namer(run))  # its ServerApp's StatArrays
    state.update_run_status(run, RunStatus.STOPPED)

    done = collect_run(shared, run)

    assert done.kept_named == 0 and not blobs.exists(model_array)


def test_blobs_nothing_names_go_once_they_are_older_than_the_grace(shared: LinkResources) -> None:
    # Arrange: an old upload nobody named (a client that went away), a recent one, and a
    # checkpoint record the run replaced with a newer one.
    state, blobs = shared.state, shared.blobs
    run = _running(shared, b"bundle")
    old_upload, recent_upload = blobs.put(b"old upload"), blobs.put(b"recent upload")
    long_ago = time.time() - 10 * shared.names.grace_s
    path = blobs.root / old_upload[:2] / old_upload  # type: ignore[attr-defined]
    os.utime(path, (long_ago, long_ago))
    replaced, replaced_array = _content(shared, 1.0)
    state.save_checkpoint(run, 1, blobs.put(replaced))
    shared.replaced.add(run, sha256_of(replaced))
    latest, latest_array = _content(shared, 2.0)
    state.save_checkpoint(run, 2, blobs.put(latest))
    state.update_run_status(run, RunStatus.FAILED, error="test")

    # Act
    done = collect_run(shared, run)

    # Assert
    assert not blobs.exists(old_upload) and blobs.exists(recent_upload)
    assert not blobs.exists(sha256_of(replaced)) and not blobs.exists(replaced_array)
    assert blobs.exists(sha256_of(latest)) and blobs.exists(latest_array)
    assert done.orphans == 1 and done.blobs == 3


def test_nothing_is_collected_when_what_the_link_keeps_cannot_be_read(
    shared: LinkResources,
) -> None:
    # Arrange: an ended run, and a live run whose stored content is corrupt.
    state, blobs = shared.state, shared.blobs
    node = state.register_node(heartbeat_interval=10.0).node_id
    ended, live = _running(shared, b"bundle a"), _running(shared, b"bundle b")
    model, model_array = _content(shared, 1.0)
    _send(shared, ended, node, model)
    _send(shared, live, node, b"\x0a\xff\xff\xff\xff\x0f")  # a field longer than the data
    state.update_run_status(ended, RunStatus.FINISHED)

    # Act / Assert
    with pytest.raises(StorageError, match="does not parse"):
        collect_run(shared, ended)
    assert blobs.exists(model_array) and blobs.exists(sha256_of(model))


def _answered_round(
    shared: LinkResources, run: int, nodes: list[int], value: float
) -> tuple[list[str], list[str]]:
    """A round of ``run``: one model to every node, each answering with its own update
    (the first in its reply's row, the others as blobs); the round's messages and the
    blobs it stored."""
    model, model_array = _content(shared, value)
    messages = [_send(shared, run, node, model) for node in nodes]
    for node in nodes:
        shared.state.fetch_messages(node)
    blobs = [model_array, sha256_of(model)]
    for position, (node, message) in enumerate(zip(nodes, messages)):
        update, update_array = _content(shared, value + 0.25 * (position + 1))
        _answer(shared, run, node, message, update, row=position == 0)
        blobs += [update_array] if position == 0 else [update_array, sha256_of(update)]
    return messages, blobs


def test_what_a_live_run_released_goes_and_what_it_still_needs_stays(
    shared: LinkResources,
) -> None:
    # Arrange: round 1 answered and released, its checkpoint replaced by round 2's;
    # round 2 answered and not released yet.
    state, blobs = shared.state, shared.blobs
    nodes = [state.register_node(heartbeat_interval=10.0).node_id for _ in range(2)]
    run = _running(shared, b"bundle")
    first, first_blobs = _answered_round(shared, run, nodes, 1.0)
    _, second_blobs = _answered_round(shared, run, nodes, 2.0)
    replaced, replaced_array = _content(shared, 3.0)
    state.save_checkpoint(run, 1, blobs.put(replaced))
    latest, latest_array = _content(shared, 4.0)
    state.save_checkpoint(run, 2, blobs.put(latest))
    shared.replaced.add(run, sha256_of(replaced))
    since = shared.clock.monotonic()

    # Act
    done = collect_released(shared, run, state.release_messages(run, first), since)

    # Assert
    gone = [*first_blobs, sha256_of(replaced), replaced_array]
    kept = [*second_blobs, sha256_of(latest), latest_array, sha256_of(b"bundle")]
    assert [h for h in gone if blobs.exists(h)] == []
    assert [h for h in kept if not blobs.exists(h)] == []
    assert (done.blobs, done.kept_named) == (len(gone), 0)
    assert shared.replaced.of(run) == set()


def test_a_blob_a_client_named_stays_until_the_message_naming_it_is_stored(
    shared: LinkResources,
) -> None:
    # Arrange: round 1 released; a node was just told that round 1's update is stored
    # (its own update is the same) and has not sent its reply yet.
    state, blobs = shared.state, shared.blobs
    node = state.register_node(heartbeat_interval=10.0).node_id
    run = _running(shared, b"bundle")
    first, first_blobs = _answered_round(shared, run, [node], 1.0)
    update_array = first_blobs[2]
    shared.names.mark_named([update_array], node_namer(node))
    released = state.release_messages(run, first)

    # Act: a collection while the name is open; the reply stored (settled) during a
    # second collection, which read the state before; a third one after.
    while_named = collect_released(shared, run, released, shared.clock.monotonic())
    before_settling = shared.clock.monotonic()
    _later(shared)
    shared.names.settle([update_array], node_namer(node))
    during = collect_released(shared, run, released, before_settling)
    kept_during = blobs.exists(update_array)
    _later(shared)
    after = collect_released(shared, run, released, shared.clock.monotonic())

    # Assert
    assert while_named.kept_named == 1 and kept_during
    assert during.kept_named == 1
    assert after.blobs == 1 and not blobs.exists(update_array)


def test_an_ended_run_s_collection_finds_what_a_live_collection_left(
    shared: LinkResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, blobs = shared.state, shared.blobs
    node = state.register_node(heartbeat_interval=10.0).node_id
    run = _running(shared, b"bundle")
    first, first_blobs = _answered_round(shared, run, [node], 1.0)
    shared.names.mark_named([first_blobs[0]], node_namer(node))  # never settled
    collect_released(shared, run, state.release_messages(run, first), shared.clock.monotonic())
    left = blobs.exists(first_blobs[0])
    state.update_run_status(run, RunStatus.FINISHED)
    _past_the_grace(shared)

    done = collect_run(shared, run)

    # The model's record stayed with the model, so the run's collection found the model.
    assert left and not blobs.exists(first_blobs[0]) and not blobs.exists(first_blobs[1])
    assert done.blobs == 2 and done.kept_named == 0


def test_a_name_that_is_no_hash_is_not_remembered(shared: LinkResources) -> None:
    # Arrange: a caller names what could be no blob, megabytes of it

    # Act
    shared.names.mark_named(["z" * (1 << 20), "../etc/passwd", "A" * 64], USER_NAMER)

    # Assert: nothing held for it
    assert not shared.names.has_open(USER_NAMER)
