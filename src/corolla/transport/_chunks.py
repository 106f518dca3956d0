"""Chunked, content-addressed payloads: splitting them up and putting them back together.

A payload (an encoded array, an app bundle) is named by the SHA-256 of its bytes and
travels as ``corolla.v1.Chunk`` messages, each a contiguous slice, in order. Protobuf
messages are capped at 2 GiB, so chunks are what lets a payload of any size through.

Sending: :func:`iter_chunks` slices the payload into ``memoryview`` pieces (no copy);
:func:`chunk_messages` wraps them in protobuf messages (the one copy into the message).

Receiving: a :class:`ChunkAssembler` checks each chunk's offset against the bytes it
already has, enforces the declared size and a maximum, hashes as it goes, writes into a
:class:`~corolla.transport.Sink` and, at the end, verifies the hash and returns the
payload as one read-only view, ready for ``decode_array`` without copying.
:func:`read_chunks` drives assemblers over a stream holding several payloads.
Every malformed stream (a gap, an overlap, an overflow, a truncation, a hash mismatch)
raises :class:`~corolla.core.CodecError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType

from corolla.core import BufferLike, CodecError, ConfigError

from ._encoded import EncodedArray, check_sha256
from ._framing import ChunkView, chunk_frame
from ._proto import transfer_pb2
from ._sinks import MemorySink, Sink

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_PAYLOAD_SIZE",
    "ChunkAssembler",
    "chunk_frames",
    "chunk_messages",
    "iter_chunks",
    "read_chunks",
]

#: Bytes per chunk unless told otherwise: large enough to amortise per-message costs,
#: small enough to stay far below gRPC's message limit (see ``grpc_options``).
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024

#: Largest payload an assembler accepts unless told otherwise (32 GiB).
DEFAULT_MAX_PAYLOAD_SIZE = 32 * 1024**3

Payload = EncodedArray | BufferLike | Sequence[BufferLike]


def _segments(payload: Payload) -> list[memoryview]:
    if isinstance(payload, EncodedArray):
        return list(payload.segments())
    if isinstance(payload, bytes | bytearray | memoryview):
        return [memoryview(payload).cast("B")]
    return [memoryview(s).cast("B") for s in payload]


def iter_chunks(
    payload: Payload, chunk_size: int = DEFAULT_CHUNK_SIZE, offset: int = 0
) -> Iterator[tuple[int, memoryview]]:
    """Slice ``payload`` from ``offset`` into ``(offset, view)`` pieces, without copying.

    ``payload`` is a buffer, a sequence of buffers standing for their concatenation, or
    an :class:`EncodedArray`. Pieces are at most ``chunk_size`` bytes; they end at
    ``offset + k * chunk_size`` or where one buffer of a sequence ends. An empty payload
    yields one empty piece, so a stream always announces its payload.

    Raises
    ------
    ConfigError
        If ``chunk_size`` is not positive or ``offset`` is outside ``[0, size]``.
    """
    if chunk_size <= 0:
        raise ConfigError(f"chunk size must be positive, got {chunk_size}")
    segments = _segments(payload)
    total = sum(len(s) for s in segments)
    if not 0 <= offset <= total:
        raise ConfigError(f"offset {offset} is outside the payload of {total} bytes")
    if total == 0:
        yield 0, memoryview(b"")
        return
    start = 0  # offset of the current segment within the payload
    for segment in segments:
        end = start + len(segment)
        position = max(offset, start)
        while position < end:
            boundary = offset + ((position - offset) // chunk_size + 1) * chunk_size
            stop = min(boundary, end)
            yield position, segment[position - start : stop - start]
            position = stop
        start = end


def chunk_messages(
    payload: Payload,
    sha256: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    offset: int = 0,
) -> Iterator[transfer_pb2.Chunk]:
    """The ``Chunk`` messages of ``payload`` from ``offset``, each at most ``chunk_size``.

    ``sha256`` is the payload's hash; it is computed when not given (an
    :class:`EncodedArray` knows its own). Pieces that :func:`iter_chunks` splits at a
    buffer boundary are joined again, so every message but the last is full.

    Raises
    ------
    ConfigError
        If ``chunk_size`` or ``offset`` is invalid.
    """
    for sha, position, total, pieces in _chunked(payload, sha256, chunk_size, offset):
        # Exactly one copy of the bytes either way: protobuf fields only take ``bytes``.
        data = bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)
        yield transfer_pb2.Chunk(sha256=sha, offset=position, total_size=total, data=data)


def chunk_frames(
    payload: Payload,
    sha256: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    offset: int = 0,
) -> Iterator[bytes]:
    """The same chunks as :func:`chunk_messages`, serialized (``chunk_frame``): one copy of
    the payload's bytes, where building and serializing messages takes three.

    Raises
    ------
    ConfigError
        If ``chunk_size`` or ``offset`` is invalid.
    """
    for sha, position, total, pieces in _chunked(payload, sha256, chunk_size, offset):
        yield chunk_frame(sha, position, total, pieces)


def _chunked(
    payload: Payload, sha256: str | None, chunk_size: int, offset: int
) -> Iterator[tuple[str, int, int, list[memoryview]]]:
    """``(sha256, offset, total_size, pieces)`` of each chunk (see :func:`chunk_messages`)."""
    segments = _segments(payload)
    if sha256 is None:
        sha256 = payload.sha256 if isinstance(payload, EncodedArray) else _digest(segments)
    total = sum(len(s) for s in segments)
    pending: list[memoryview] = []
    pending_offset = offset
    for position, piece in iter_chunks(segments, chunk_size, offset):
        if pending and (position - offset) // chunk_size != (pending_offset - offset) // chunk_size:
            yield sha256, pending_offset, total, pending
            pending = []
        if not pending:
            pending_offset = position
        pending.append(piece)
    if pending:
        yield sha256, pending_offset, total, pending


def _digest(segments: Sequence[memoryview]) -> str:
    h = hashlib.sha256()
    for s in segments:
        h.update(s)
    return h.hexdigest()


class ChunkAssembler:
    """Rebuilds one payload from its chunks and verifies it.

    Parameters
    ----------
    sha256
        The payload's expected lower-case hex SHA-256.
    total_size
        The payload's declared size in bytes.
    sink
        Called with ``total_size`` (after the size is checked) to get the :class:`Sink`
        to write into; by default a :class:`MemorySink`. Use
        ``functools.partial(FileSink, path)`` for payloads that should not live in RAM.
    max_size
        Largest ``total_size`` accepted.

    To resume a broken download, keep the assembler and ask the sender for the bytes
    from :attr:`offset` on; the hash state carries over.

    Raises
    ------
    CodecError
        If ``sha256`` is not a hex SHA-256 or ``total_size`` is negative or above
        ``max_size``.
    """

    __slots__ = ("_hash", "_offset", "_sink", "_state", "sha256", "total_size")

    def __init__(
        self,
        sha256: str,
        total_size: int,
        *,
        sink: Callable[[int], Sink] = MemorySink,
        max_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
    ) -> None:
        self.sha256 = check_sha256(sha256)
        if not 0 <= total_size <= max_size:
            raise CodecError(
                f"payload {sha256[:12]} declares {total_size} bytes; the limit is {max_size}"
            )
        self.total_size = total_size
        self._sink = sink(total_size)
        self._hash = hashlib.sha256()
        self._offset = 0
        self._state = "open"

    @property
    def offset(self) -> int:
        """Bytes received so far: where the next chunk must start."""
        return self._offset

    @property
    def complete(self) -> bool:
        """True once every byte has arrived (the hash is checked by :meth:`finish`)."""
        return self._offset == self.total_size

    def add(self, offset: int, data: BufferLike) -> None:
        """Append the bytes of one chunk, which must start at :attr:`offset`.

        Raises
        ------
        CodecError
            If the payload is finished or aborted, the chunk does not start where the
            previous one ended, is empty (only an empty payload has an empty chunk), or
            runs past the declared size.
        """
        if self._state != "open":
            raise CodecError(f"payload {self.sha256[:12]} is {self._state}; no chunk may follow")
        view = memoryview(data).cast("B")
        if offset != self._offset:
            raise CodecError(
                f"chunk of payload {self.sha256[:12]} starts at byte {offset}, expected "
                f"{self._offset}: chunks must arrive in order, without gaps or overlaps"
            )
        if not view and self.total_size:
            raise CodecError(f"empty chunk in payload {self.sha256[:12]} at byte {offset}")
        if offset + len(view) > self.total_size:
            raise CodecError(
                f"chunk of payload {self.sha256[:12]} ends at byte {offset + len(view)}, "
                f"past its declared size of {self.total_size}"
            )
        self._sink.write(offset, view)
        self._hash.update(view)
        self._offset += len(view)

    def add_chunk(self, chunk: transfer_pb2.Chunk | ChunkView) -> None:
        """:meth:`add` a ``Chunk`` message, checking it belongs to this payload.

        Raises
        ------
        CodecError
            As :meth:`add`, or if the chunk names another hash or total size.
        """
        if chunk.sha256 != self.sha256 or chunk.total_size != self.total_size:
            raise CodecError(
                f"chunk of payload {chunk.sha256[:12]} ({chunk.total_size} bytes) in the "
                f"stream of payload {self.sha256[:12]} ({self.total_size} bytes)"
            )
        self.add(chunk.offset, chunk.data)

    def finish(self) -> memoryview:
        """Verify the payload and return it whole, as a read-only view of the sink.

        Raises
        ------
        CodecError
            If bytes are missing (a truncated stream) or the hash does not match; the
            sink is aborted then.
        """
        if self._state != "open":
            raise CodecError(f"payload {self.sha256[:12]} is already {self._state}")
        if not self.complete:
            self.abort()
            raise CodecError(
                f"payload {self.sha256[:12]} truncated: the stream ended after "
                f"{self._offset} of {self.total_size} bytes"
            )
        digest = self._hash.hexdigest()
        if digest != self.sha256:
            self.abort()
            raise CodecError(
                f"payload hash mismatch: expected sha256 {self.sha256}, received bytes "
                f"hash to {digest}"
            )
        self._state = "finished"
        return self._sink.finish()

    def abort(self) -> None:
        """Discard the partial payload (idempotent)."""
        if self._state == "open":
            self._state = "aborted"
            self._sink.abort()

    def __enter__(self) -> ChunkAssembler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()

    def __repr__(self) -> str:
        return (
            f"ChunkAssembler({self.sha256[:12]}, {self._offset}/{self.total_size} bytes, "
            f"{self._state})"
        )


#: Opens the assembler for a payload first seen in a stream: ``(sha256, total_size)``.
AssemblerFactory = Callable[[str, int], ChunkAssembler]


def read_chunks(
    chunks: Iterable[transfer_pb2.Chunk],
    start: AssemblerFactory | None = None,
    *,
    max_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
) -> Iterator[tuple[str, memoryview]]:
    """Assemble the payloads of a stream that carries them one after another.

    Yields ``(sha256, view)`` as each payload completes and verifies. ``start`` opens
    the assembler of each new payload; a receiver that kept the assembler of an
    interrupted upload returns it here, and the stream resumes at its offset. By
    default each payload gets a fresh in-memory assembler limited to ``max_size``.

    Raises
    ------
    CodecError
        If a chunk is out of order, names another size than earlier chunks of its
        payload, a payload is left incomplete (by the next payload or by the end of the
        stream), or a hash does not match. The payload at fault is aborted. Errors raised
        by ``chunks`` itself (a broken connection) propagate and leave the current
        assembler as it is, so it can be resumed.
    """
    if start is None:

        def start(sha256: str, total_size: int) -> ChunkAssembler:
            return ChunkAssembler(sha256, total_size, max_size=max_size)

    current: ChunkAssembler | None = None
    for chunk in chunks:
        if current is not None and chunk.sha256 != current.sha256:
            current.abort()
            raise CodecError(
                f"payload {current.sha256[:12]} truncated: payload {chunk.sha256[:12]} "
                f"started after {current.offset} of {current.total_size} bytes"
            )
        if current is None:
            current = start(chunk.sha256, chunk.total_size)
        try:
            current.add_chunk(chunk)
            if current.complete:
                view = current.finish()
                sha256, current = current.sha256, None
                yield sha256, view
        except CodecError:
            if current is not None:
                current.abort()
            raise
    if current is not None:
        current.finish()  # raises: truncated
