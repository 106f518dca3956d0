"""Moving content-addressed payloads between a blob store and a gRPC chunk stream.

Both ends of every payload transfer share these: the link serving ``PullArrays`` and
receiving ``PushArrays`` (for nodes and for ServerApp processes), a node or a ServerApp
uploading the arrays of its messages and downloading the ones it lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import grpc
import numpy as np

from corolla.core import CodecError, decode_array
from corolla.state import BlobNotFoundError, BlobStore
from corolla.transport import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_PAYLOAD_SIZE,
    ChunkAssembler,
    EncodedArray,
    check_sha256,
    chunk_frames,
    iter_rpc,
    transfer_pb2,
    translate_rpc_errors,
)
from corolla.transport._framing import ChunkView, chunk_frame, parse_chunk
from corolla.transport._proto import fleet_pb2

__all__ = [
    "ArrayCache",
    "payload_status",
    "pull_payload",
    "push_missing",
    "with_chunk_frames",
    "serve_payload",
    "store_pushed",
]

S = TypeVar("S")

#: A chunk as the generated class parses it, or as ``parse_chunk`` reads it.
AnyChunk = transfer_pb2.Chunk | ChunkView
#: Calls a client makes to move arrays: the shape shared by the Fleet and ServerAppIo stubs.
StatCall = Callable[..., fleet_pb2.StatArraysResponse]
PushCall = Callable[..., fleet_pb2.PushArraysResponse]
PullCall = Callable[..., Iterator[AnyChunk]]


def serve_payload(
    blobs: BlobStore, sha256: str, offset: int, *, count: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """The serialized ``Chunk`` messages of a stored payload from ``offset`` on (the store
    raises if it lacks it), for a servicer registered with ``_malformed.add_servicer``.
    ``count``, if given, is called with the data bytes of each chunk before it is yielded.

    Each chunk is read into memory, then joined to its few header bytes
    (:func:`~corolla.transport._framing.chunk_frame`) rather than copied into a message
    and serialized again; and it is read, rather than sliced from a map of the whole blob,
    so a link serving a large model to many nodes at once holds a chunk per node, not a
    mapped model per node.
    """
    total = blobs.size(sha256)
    if offset > total:
        raise CodecError(f"offset {offset} is past the end of payload {sha256[:12]}")
    if total == 0:  # one empty chunk announces an empty payload
        yield chunk_frame(sha256, 0, 0, ())
        return
    position = offset
    for data in blobs.iter_bytes(sha256, offset, DEFAULT_CHUNK_SIZE):
        frame = chunk_frame(sha256, position, total, (data,))
        position += len(data)
        if count is not None:
            count(len(data))
        yield frame


def data_bytes(chunk: AnyChunk) -> int:
    """The bytes of payload data ``chunk`` carries (its header aside)."""
    return len(chunk.data)


def payload_status(blobs: BlobStore, sha256: str) -> transfer_pb2.PayloadStatus:
    """Whether ``blobs`` holds a payload (partial uploads are not kept)."""
    held = blobs.exists(sha256)
    return transfer_pb2.PayloadStatus(
        sha256=sha256, stored_bytes=blobs.size(sha256) if held else 0, complete=held
    )


def store_pushed(
    blobs: BlobStore,
    chunks: Iterable[transfer_pb2.Chunk | ChunkView],
    *,
    max_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
) -> list[transfer_pb2.PayloadStatus]:
    """Store each payload of a push stream as its chunks arrive; return their statuses.

    Bytes go straight to the blob store, which hashes them while writing and keeps
    nothing that does not hash to the payload's name, so the receiver holds one chunk
    in memory at a time, whatever the payload's size.

    Raises
    ------
    CodecError
        If a payload is truncated, out of order, larger than declared or than
        ``max_size``, or does not hash to its name; nothing of it is stored.
    """
    iterator = iter(chunks)
    statuses = []
    head = next(iterator, None)
    while head is not None:
        sha256 = check_sha256(head.sha256)
        total = head.total_size
        if total > max_size:
            raise CodecError(
                f"payload {sha256[:12]} declares {total} bytes; the limit is {max_size}"
            )
        reader = _PayloadReader(head, iterator)
        blobs.put_stream(reader, expected_hash=sha256)  # BlobIntegrityError is a CodecError
        statuses.append(payload_status(blobs, sha256))
        head = reader.following
    return statuses


class _PayloadReader:
    """The data of one payload's chunks, checked for order and size as they come; after
    the last one, :attr:`following` is the first chunk of the next payload (or None)."""

    def __init__(self, first: AnyChunk, stream: Iterator[AnyChunk]) -> None:
        self._first = first
        self._stream = stream
        self.following: AnyChunk | None = None

    def __iter__(self) -> Iterator[bytes | memoryview]:
        sha256, total = self._first.sha256, self._first.total_size
        chunk: AnyChunk | None = self._first
        offset = 0
        while True:
            if chunk is None or chunk.sha256 != sha256:
                raise CodecError(
                    f"payload {sha256[:12]} truncated: the stream moved on after "
                    f"{offset} of {total} bytes"
                )
            if chunk.total_size != total or chunk.offset != offset:
                raise CodecError(
                    f"chunk of payload {sha256[:12]} at byte {chunk.offset} of "
                    f"{chunk.total_size}, expected byte {offset} of {total}"
                )
            size = len(chunk.data)
            if (size == 0 and total) or offset + size > total:
                raise CodecError(f"chunk of payload {sha256[:12]} is empty or overflows")
            yield chunk.data
            offset += size
            if offset == total:
                self.following = next(self._stream, None)
                return
            chunk = next(self._stream, None)


def push_missing(
    stat: StatCall,
    push: PushCall,
    arrays: Mapping[str, EncodedArray | bytes],
    metadata: Any = None,
) -> int:
    """Upload the payloads (encoded arrays, or bytes named by their hash) the receiver
    lacks; return the bytes sent. ``push`` takes serialized chunks (a stub's call from
    :func:`with_chunk_frames`).

    Raises
    ------
    CorollaError
        The translation of a failed call.
    """
    if not arrays:
        return 0
    with translate_rpc_errors():
        held = stat(fleet_pb2.StatArraysRequest(sha256=list(arrays)), metadata=metadata)
    missing = [s.sha256 for s in held.arrays if not s.complete]
    if not missing:
        return 0

    def stream() -> Iterator[bytes]:
        for sha256 in missing:
            yield from chunk_frames(arrays[sha256], sha256=sha256, chunk_size=DEFAULT_CHUNK_SIZE)

    with translate_rpc_errors():
        push(stream(), metadata=metadata)
    return sum(_size(arrays[s]) for s in missing)


def _size(payload: EncodedArray | bytes) -> int:
    return payload.size if isinstance(payload, EncodedArray) else len(payload)


#: The calls that stream a payload's chunks to the caller, and their request types.
_CHUNK_STREAMS = {
    "PullArrays": fleet_pb2.PullArraysRequest,
    "PullBundle": fleet_pb2.PullBundleRequest,
}


def with_chunk_frames(stub: S, channel: grpc.Channel, service: str) -> S:
    """``stub`` (of ``corolla.v1.<service>``), its calls that move chunks now moving them
    without copying their data more than once: downloaded chunks are read with
    ``parse_chunk`` (their data a view of the bytes received), and ``PushArrays`` takes
    the serialized chunks :func:`push_missing` sends (``chunk_frames``)."""
    for method, request in _CHUNK_STREAMS.items():
        if hasattr(stub, method):
            call = channel.unary_stream(
                f"/corolla.v1.{service}/{method}",
                request_serializer=request.SerializeToString,
                response_deserializer=parse_chunk,
            )
            setattr(stub, method, call)
    if hasattr(stub, "PushArrays"):
        push: grpc.StreamUnaryMultiCallable[bytes, fleet_pb2.PushArraysResponse]
        push = channel.stream_unary(
            f"/corolla.v1.{service}/PushArrays",
            request_serializer=None,  # the chunks come serialized
            response_deserializer=fleet_pb2.PushArraysResponse.FromString,
        )
        stub.PushArrays = push
    return stub


def pull_payload(pull: PullCall, sha256: str, size: int, metadata: Any = None) -> memoryview:
    """Download one payload and verify it.

    Raises
    ------
    CodecError
        If the stream is truncated or the bytes do not hash to ``sha256``.
    CorollaError
        The translation of a failed call.
    """
    with ChunkAssembler(sha256, size) as assembler:
        request = fleet_pb2.PullArraysRequest(sha256=sha256, offset=0)
        for chunk in iter_rpc(pull(request, metadata=metadata)):
            assembler.add_chunk(chunk)
        return assembler.finish()


class ArrayCache:
    """Decoded arrays by hash, backed by a blob store; fetches what it lacks.

    Parameters
    ----------
    blobs
        Where downloaded payloads are kept (a node's disk, or memory).
    pull
        The ``PullArrays`` call of a stub.
    metadata
        gRPC metadata sent with every call (the bearer token).
    local
        The link's own blob store, for a ServerApp the link started on its machine:
        payloads found there, with the size their entry declares, are read in place
        (mapped, so the arrays decode without a copy) rather than downloaded. The link
        stored each under its name only after checking its hash, and serves it without
        checking it again either. One no longer there is downloaded.
    """

    def __init__(
        self,
        blobs: BlobStore,
        pull: PullCall,
        metadata: Any = None,
        local: BlobStore | None = None,
    ) -> None:
        self._blobs = blobs
        self._pull = pull
        self._metadata = metadata
        self._local = local
        # Sizes of the payloads left to ``local``, to download one it no longer has.
        self._in_place: dict[str, int] = {}

    @property
    def blobs(self) -> BlobStore:
        return self._blobs

    def fetch(self, entries: Mapping[str, int]) -> int:
        """Make sure every ``sha256 -> size`` is held; return the bytes downloaded."""
        fetched = 0
        for sha256, size in entries.items():
            if self._blobs.exists(sha256):
                continue
            if self._local_size(sha256) == size:
                self._in_place[sha256] = size
                continue
            fetched += self._download(sha256, size)
        return fetched

    def _local_size(self, sha256: str) -> int | None:
        if self._local is None:
            return None
        try:
            return self._local.size(sha256)
        except BlobNotFoundError:
            return None

    def _download(self, sha256: str, size: int) -> int:
        view = pull_payload(self._pull, sha256, size, self._metadata)
        # pull_payload hashed the bytes as they came: no second pass over them.
        self._blobs.put_stream((view,), expected_hash=sha256, verified=True)
        return size

    def __call__(self, sha256: str) -> np.ndarray[Any, Any]:
        """The decoded array (a resolver for ``message_from_proto``); KeyError if absent."""
        if self._local is not None and sha256 in self._in_place:
            try:
                return decode_array(self._local.open(sha256))
            except BlobNotFoundError:  # collected meanwhile
                self._download(sha256, self._in_place.pop(sha256))
        if not self._blobs.exists(sha256):
            raise KeyError(sha256)
        return decode_array(self._blobs.open(sha256))
