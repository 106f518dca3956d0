"""Protobuf messages assembled from bytes already serialized, and read without copying.

A protobuf message is the concatenation of its fields, and a field holding a message
(or bytes) is its tag, its length as a varint, and the bytes. So a ``corolla.v1.Message``
can be assembled from the stored bytes of its content and the few bytes of its metadata,
without parsing the content and serializing it again: the link does so for every message
it pushes to a node and every reply it streams to a ServerApp.

Array payloads travel as ``corolla.v1.Chunk`` messages of 4 MiB. Built and read through
the generated classes, each chunk's bytes were copied three times more than needed
(into the message, into its serialization, and out of a parsed message again). The link
serves chunks as :func:`chunk_frame` builds them (one copy, header and data joined) and
reads uploaded ones with :func:`parse_chunk`, whose data is a view of the received bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message as ProtoMessage

__all__ = ["ChunkView", "chunk_frame", "length_delimited", "parse_chunk", "serialized_message"]

_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_FIXED32 = 5


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    """The wire form of field ``field_number`` holding ``payload`` (a serialized message,
    bytes or a string)."""
    return b"".join(
        (_varint(field_number << 3 | _LENGTH_DELIMITED), _varint(len(payload)), payload)
    )


def serialized_message(
    metadata: ProtoMessage, *, content: bytes | None = None, error: ProtoMessage | None = None
) -> bytes:
    """The serialized ``corolla.v1.Message`` with ``metadata`` and either the serialized
    ``content`` (a ``RecordDict``) or ``error``: what ``Message.SerializeToString`` gives
    for the same fields."""
    parts = [length_delimited(1, metadata.SerializeToString(deterministic=True))]
    if content is not None:
        parts.append(length_delimited(2, content))
    elif error is not None:
        parts.append(length_delimited(3, error.SerializeToString(deterministic=True)))
    return b"".join(parts)


class ChunkView:
    """A ``corolla.v1.Chunk`` read by :func:`parse_chunk`: its fields, with ``data`` a
    read-only view of the bytes it was read from."""

    __slots__ = ("data", "offset", "sha256", "total_size")

    def __init__(self, sha256: str, offset: int, total_size: int, data: memoryview) -> None:
        self.sha256 = sha256
        self.offset = offset
        self.total_size = total_size
        self.data = data

    def __repr__(self) -> str:
        return (
            f"ChunkView(sha256={self.sha256[:12]!r}, offset={self.offset}, "
            f"total_size={self.total_size}, data=<{len(self.data)} bytes>)"
        )


def chunk_frame(sha256: str, offset: int, total_size: int, data: Sequence[Any]) -> bytes:
    """The serialized ``corolla.v1.Chunk`` of these fields, ``data`` given as buffers to
    join: what ``Chunk(...).SerializeToString()`` gives, with one copy of the data."""
    size = sum(memoryview(piece).nbytes for piece in data)
    head = [length_delimited(1, sha256.encode())] if sha256 else []
    if offset:
        head.append(_varint(2 << 3 | _VARINT) + _varint(offset))
    if total_size:
        head.append(_varint(3 << 3 | _VARINT) + _varint(total_size))
    if size:
        head.append(_varint(4 << 3 | _LENGTH_DELIMITED) + _varint(size))
    return b"".join((*head, *data))


def _read_varint(view: memoryview, position: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if position >= len(view):
            raise ValueError("truncated varint")
        byte = view[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & 0xFFFF_FFFF_FFFF_FFFF, position
    raise ValueError("varint longer than 10 bytes")


def parse_chunk(raw: bytes) -> ChunkView:
    """Read a serialized ``corolla.v1.Chunk`` as protobuf does (fields in any order, the
    last of a repeated one wins, unknown fields skipped), without copying its data.

    Raises
    ------
    ValueError
        If the bytes are not a ``Chunk``: a truncated field, an unknown wire type, a
        ``sha256`` that is not UTF-8.
    """
    try:
        return _parse_chunk(memoryview(raw).cast("B"))
    except ValueError as exc:
        raise ValueError(f"not a corolla.v1.Chunk: {exc}") from None


def _parse_chunk(view: memoryview) -> ChunkView:
    sha256 = b""
    offset = total_size = 0
    data = view[0:0]
    position = 0
    while position < len(view):
        tag, position = _read_varint(view, position)
        field, wire = tag >> 3, tag & 7
        if not 0 < field < 2**29 or tag >= 2**32:
            raise ValueError(f"field number {field} out of range")
        if wire == _VARINT:
            value, position = _read_varint(view, position)
            if field == 2:
                offset = value
            elif field == 3:
                total_size = value
        elif wire == _LENGTH_DELIMITED:
            length, position = _read_varint(view, position)
            end = position + length
            if end > len(view):
                raise ValueError("length-delimited field runs past the end")
            if field == 1:
                sha256 = bytes(view[position:end])
            elif field == 4:
                data = view[position:end]
            position = end
        elif wire in (_FIXED64, _FIXED32):
            position += 8 if wire == _FIXED64 else 4
            if position > len(view):
                raise ValueError("fixed-size field runs past the end")
        else:
            raise ValueError(f"wire type {wire} of field {field}")
    try:
        text = sha256.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"sha256 is not UTF-8: {exc}") from exc
    return ChunkView(text, offset, total_size, data.toreadonly())
