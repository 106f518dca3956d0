"""The client's end of payload transfers: uploading what the link lacks, downloading and
verifying what the caller lacks.

A node, a run's ServerApp and a Control client move content-addressed payloads this way
(the link's end is ``corolla.runtime.link._payloads``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import grpc
import numpy as np

from corolla.core import decode_array
from corolla.state import BlobNotFoundError, BlobStore
from corolla.transport import (
    DEFAULT_CHUNK_SIZE,
    ChunkAssembler,
    ChunkView,
    EncodedArray,
    chunk_frames,
    fleet_pb2,
    iter_rpc,
    parse_chunk,
    transfer_pb2,
    translate_rpc_errors,
)

__all__ = ["ArrayCache", "pull_payload", "push_missing", "with_chunk_frames"]

S = TypeVar("S")

#: A chunk as the generated class parses it, or as ``parse_chunk`` reads it.
AnyChunk = transfer_pb2.Chunk | ChunkView
#: Calls a client makes to move arrays: the shape shared by the Fleet and ServerAppIo stubs.
StatCall = Callable[..., fleet_pb2.StatArraysResponse]
PushCall = Callable[..., fleet_pb2.PushArraysResponse]
PullCall = Callable[..., Iterator[AnyChunk]]


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
