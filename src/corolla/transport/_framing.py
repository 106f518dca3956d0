"""Protobuf messages assembled from bytes already serialized.

A protobuf message is the concatenation of its fields, and a field holding a message
(or bytes) is its tag, its length as a varint, and the bytes. So a ``corolla.v1.Message``
can be assembled from the stored bytes of its content and the few bytes of its metadata,
without parsing the content and serializing it again: the link does so for every message
it pushes to a node and every reply it streams to a ServerApp.
"""

from __future__ import annotations

from google.protobuf.message import Message as ProtoMessage

__all__ = ["length_delimited", "serialized_message"]

_LENGTH_DELIMITED = 2


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
