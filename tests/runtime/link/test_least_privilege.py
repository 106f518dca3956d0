"""A node reads only what it was sent: the arrays of its own messages, the runs it serves
and their bundles. Another node's model, run or bundle is refused without saying whether
it exists."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from corolla.core import ArrayRecord, Message, RecordDict
from corolla.runtime import Link, LinkLimits
from corolla.transport import (
    EncodedArray,
    channel_options,
    chunk_messages,
    fleet_pb2,
    fleet_pb2_grpc,
    run_pb2,
    serverappio_pb2_grpc,
    transfer_pb2,
)

from .test_link import _grid, _receive, _register
from .test_signed_requests import audit_records

#: Large enough to be sent by hash, not inline.
_MODEL = np.arange(300_000, dtype=np.float32)


def _denied(call: object) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    error = caught.value
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    return str(error.details())  # type: ignore[attr-defined]


def _pull(fleet: fleet_pb2_grpc.FleetStub, metadata: object, sha256: str) -> bytes:
    request = fleet_pb2.PullArraysRequest(sha256=sha256)
    return b"".join(c.data for c in fleet.PullArrays(request, metadata=metadata, timeout=10))


def test_a_node_downloads_the_arrays_of_its_message_and_no_other_node_can(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    # Arrange: a model sent to one node only; another node registered beside it
    (sent_to, metadata), (other, other_metadata) = _register(fleet), _register(fleet)
    grid = _grid(link, appio_channel)
    content = RecordDict({"arrays": ArrayRecord({"w": _MODEL})})
    grid.send([Message(content, dst_node_id=sent_to, message_type="train")])
    (message,) = _receive(fleet, metadata, 1)
    sha256 = message.content.records[0].array_record.entries[0].sha256

    # Act
    pulled = _pull(fleet, metadata, sha256)
    details = _denied(lambda: _pull(fleet, other_metadata, sha256))

    # Assert
    assert len(pulled) > _MODEL.nbytes
    assert f"node {other} was sent no message naming array {sha256[:12]}" in details
    (refused,) = audit_records(link, "request.refused", count=1)
    assert refused["data"]["method"] == "PullArrays"
    assert refused["data"]["node_id"] == other


def test_a_node_reads_only_the_runs_it_serves_and_their_bundles(
    link: Link, fleet: fleet_pb2_grpc.FleetStub, appio_channel: grpc.Channel
) -> None:
    (sent_to, metadata), (other, other_metadata) = _register(fleet), _register(fleet)
    grid = _grid(link, appio_channel)
    grid.send([Message(RecordDict(), dst_node_id=sent_to, message_type="train")])
    (message,) = _receive(fleet, metadata, 1)
    run_id = message.metadata.run_id
    bundle = link.state.get_run(run_id).bundle_hash

    served = fleet.GetRun(run_pb2.GetRunRequest(run_id=run_id), metadata=metadata, timeout=10)
    run_refused = _denied(
        lambda: fleet.GetRun(
            run_pb2.GetRunRequest(run_id=run_id), metadata=other_metadata, timeout=10
        )
    )
    bundle_refused = _denied(
        lambda: list(
            fleet.PullBundle(
                fleet_pb2.PullBundleRequest(sha256=bundle), metadata=other_metadata, timeout=10
            )
        )
    )

    assert served.run.run_id == run_id
    assert f"node {other} is serving no message of run {run_id}" in run_refused
    assert f"bundle {bundle[:12]}" in bundle_refused


def test_the_control_api_hands_out_no_array_but_runs_results(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    # A node's upload (a model update) is no user's to download.
    _, metadata = _register(fleet)
    update = EncodedArray.from_array(_MODEL)
    fleet.PushArrays(iter(chunk_messages(update)), metadata=metadata, timeout=10)

    with grpc.insecure_channel(link.control_address, options=channel_options()) as channel:
        artifacts = serverappio_pb2_grpc.RunArtifactsStub(channel)
        request = fleet_pb2.PullArraysRequest(sha256=update.sha256)
        details = _denied(lambda: list(artifacts.PullArrays(request, timeout=10)))

    assert f"no run's result names array {update.sha256[:12]}" in details


def test_a_node_opening_many_uploads_holds_one_slot_and_others_still_upload(
    tmp_path: Path,
) -> None:
    # Arrange: a link with 4 upload slots; one node opens 8 uploads that stall after their
    # first chunk, as if its network were slow (or to starve the others)
    stalled = threading.Event()
    model = EncodedArray.from_array(np.arange(512 * 1024, dtype=np.float32))  # 2 MiB

    def stalling() -> Iterator[transfer_pb2.Chunk]:
        yield next(iter(chunk_messages(model, chunk_size=64 * 1024)))
        stalled.wait(30)

    with (
        Link(
            tmp_path / "link",
            fleet_address="127.0.0.1:0",
            control_address="127.0.0.1:0",
            limits=LinkLimits(upload_streams=4),
        ) as link,
        grpc.insecure_channel(link.fleet_address, options=channel_options()) as channel,
    ):
        fleet = fleet_pb2_grpc.FleetStub(channel)
        (_, greedy), (_, honest) = _register(fleet), _register(fleet)
        calls = [fleet.PushArrays.future(stalling(), metadata=greedy) for _ in range(8)]
        try:
            time.sleep(0.5)

            # Act: another node uploads its 2 MiB update
            started = time.monotonic()
            pushed = fleet.PushArrays(iter(chunk_messages(model)), metadata=honest, timeout=20)
            seconds = time.monotonic() - started
        finally:
            stalled.set()
            for call in calls:
                call.cancel()

    # Assert: not queued behind the stalled uploads
    assert pushed.arrays[0].complete
    assert seconds < 5


def test_a_node_cannot_download_another_node_s_update(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    (_, author), (other, reader) = _register(fleet), _register(fleet)
    update = EncodedArray.from_array(_MODEL + 1)
    fleet.PushArrays(iter(chunk_messages(update)), metadata=author, timeout=10)

    details = _denied(lambda: _pull(fleet, reader, update.sha256))

    assert len(_pull(fleet, author, update.sha256)) == update.size  # its own, it may
    assert f"node {other} was sent no message naming array {update.sha256[:12]}" in details
