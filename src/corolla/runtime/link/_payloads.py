"""The link's end of payload transfers: serving stored payloads as chunk frames, and
storing pushed ones as their chunks arrive.

The link serves ``PullArrays`` and receives ``PushArrays`` for nodes and for ServerApp
processes alike with these (the other end is ``corolla.runtime._payloads``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from corolla.core import CodecError
from corolla.state import BlobStore
from corolla.transport import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_PAYLOAD_SIZE,
    ChunkView,
    check_sha256,
    chunk_frame,
    transfer_pb2,
)

__all__ = ["data_bytes", "payload_status", "serve_payload", "store_pushed"]

#: A chunk as the generated class parses it, or as ``parse_chunk`` reads it.
AnyChunk = transfer_pb2.Chunk | ChunkView


def serve_payload(
    blobs: BlobStore, sha256: str, offset: int, *, count: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """The serialized ``Chunk`` messages of a stored payload from ``offset`` on (the store
    raises if it lacks it), for a servicer registered with ``_handlers.add_servicer``.
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
