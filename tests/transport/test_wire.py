"""The pieces together over a real TLS connection: a reply with a model-sized array goes
up in chunks and is rebuilt; a global model comes down, resumed after a break."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from corolla.core import (
    ArrayRecord,
    CodecError,
    CorollaError,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
    decode_array,
)
from corolla.transport import (
    DEFAULT_CHUNK_SIZE,
    ChunkAssembler,
    EncodedArray,
    TransportError,
    abort,
    array_entries,
    bearer_metadata,
    bearer_token,
    channel_credentials,
    channel_options,
    chunk_messages,
    fleet_pb2,
    fleet_pb2_grpc,
    generate_certificates,
    iter_rpc,
    message_from_proto,
    message_to_proto,
    read_chunks,
    server_credentials,
    transfer_pb2,
    translate_rpc_errors,
)

from .servers import serve

TOKEN = "s3cret"


class BlobFleet(fleet_pb2_grpc.FleetServicer):
    """Stores pushed arrays by hash, serves them back, and rebuilds replies."""

    def __init__(self) -> None:
        self.blobs: dict[str, memoryview] = {}
        self.replies: list[Message] = []
        self.lock = threading.Lock()

    def _authenticate(self, context: grpc.ServicerContext) -> None:
        if bearer_token(context.invocation_metadata()) != TOKEN:  # type: ignore[arg-type]
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown token")

    def StatArrays(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._authenticate(context)
        statuses = []
        for sha in request.sha256:
            held = self.blobs.get(sha)
            size = 0 if held is None else len(held)
            statuses.append(
                transfer_pb2.PayloadStatus(sha256=sha, stored_bytes=size, complete=held is not None)
            )
        return fleet_pb2.StatArraysResponse(arrays=statuses)

    def PushArrays(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        self._authenticate(context)
        stored = []
        try:
            for sha, view in read_chunks(request_iterator):
                with self.lock:
                    self.blobs[sha] = view
                stored.append(
                    transfer_pb2.PayloadStatus(sha256=sha, stored_bytes=len(view), complete=True)
                )
        except CorollaError as exc:
            abort(context, exc)
        return fleet_pb2.PushArraysResponse(arrays=stored)

    def PullArrays(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._authenticate(context)
        blob = self.blobs[request.sha256]
        yield from chunk_messages(blob, request.sha256, offset=request.offset)

    def SendReply(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._authenticate(context)
        resolve = {h: decode_array(self.blobs[h]) for h in array_entries(request.message)}
        self.replies.append(message_from_proto(request.message, resolve))
        return fleet_pb2.SendReplyResponse(message_id="r1")


@pytest.fixture(scope="module")
def link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BlobFleet, grpc.Channel]]:
    certs = generate_certificates(tmp_path_factory.mktemp("certs"))
    servicer = BlobFleet()
    credentials = server_credentials(certs.link_certificate, certs.link_key)
    with serve(
        lambda s: fleet_pb2_grpc.add_FleetServicer_to_server(servicer, s), credentials
    ) as port:
        channel_creds = channel_credentials(certs.ca_certificate)
        with grpc.secure_channel(
            f"localhost:{port}", channel_creds, options=channel_options()
        ) as channel:
            yield servicer, channel


def test_reply_with_large_array_goes_up_in_chunks(link: Any) -> None:
    servicer, channel = link
    stub = fleet_pb2_grpc.FleetStub(channel)
    weights = np.arange(3 * DEFAULT_CHUNK_SIZE // 8 + 5, dtype=np.float64)  # ~12 MiB
    request = Message(
        RecordDict({"w": ArrayRecord({"a": weights, "b": weights}), "m": MetricRecord({"n": 3})}),
        metadata=Metadata(1, "m1", 0, 5, "", "1", "train", 60.0, 0.0),
    )
    reply = Message(request.content, reply_to=request)
    proto, arrays = message_to_proto(reply)
    auth = bearer_metadata(TOKEN)

    with translate_rpc_errors():
        stats = stub.StatArrays(fleet_pb2.StatArraysRequest(sha256=list(arrays)), metadata=auth)
        missing = [s.sha256 for s in stats.arrays if not s.complete]
        chunks = (c for h in missing for c in chunk_messages(arrays[h]))
        pushed = stub.PushArrays(chunks, metadata=auth)
        stub.SendReply(fleet_pb2.SendReplyRequest(message=proto), metadata=auth)

    assert len(arrays) == 1  # "a" and "b" are one payload
    assert [s.complete for s in pushed.arrays] == [True]
    assert servicer.replies[-1] == reply


def test_global_model_download_resumes_after_a_break(link: Any, tmp_path: Path) -> None:
    servicer, channel = link
    stub = fleet_pb2_grpc.FleetStub(channel)
    model = EncodedArray.from_array(np.linspace(0, 1, 2 * DEFAULT_CHUNK_SIZE // 4, np.float32))
    servicer.blobs[model.sha256] = memoryview(model.tobytes())
    auth = bearer_metadata(TOKEN)
    assembler = ChunkAssembler(model.sha256, model.size)

    first = stub.PullArrays(fleet_pb2.PullArraysRequest(sha256=model.sha256), metadata=auth)
    assembler.add_chunk(next(first))
    first.cancel()  # the stream breaks after one chunk
    request = fleet_pb2.PullArraysRequest(sha256=model.sha256, offset=assembler.offset)
    for chunk in iter_rpc(stub.PullArrays(request, metadata=auth)):
        assembler.add_chunk(chunk)

    assert np.array_equal(decode_array(assembler.finish()), model.array)


def test_calls_without_the_token_are_refused(link: Any) -> None:
    _, channel = link
    stub = fleet_pb2_grpc.FleetStub(channel)

    with pytest.raises(TransportError) as caught, translate_rpc_errors():
        stub.StatArrays(fleet_pb2.StatArraysRequest(), metadata=bearer_metadata("wrong"))

    assert caught.value.status == "UNAUTHENTICATED"


def test_corrupt_upload_is_refused_with_its_code(link: Any) -> None:
    _, channel = link
    stub = fleet_pb2_grpc.FleetStub(channel)
    (chunk,) = chunk_messages(b"payload")
    chunk.data = b"tampered"[: len(chunk.data)]

    with pytest.raises(CodecError, match="hash mismatch"), translate_rpc_errors():
        stub.PushArrays(iter([chunk]), metadata=bearer_metadata(TOKEN))
