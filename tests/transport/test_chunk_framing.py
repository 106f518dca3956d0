"""Chunks built and read without the generated class agree with protobuf, byte for byte."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from corolla.transport import chunk_frames, chunk_messages, transfer_pb2
from corolla.transport._framing import chunk_frame, parse_chunk

UINT64 = st.integers(min_value=0, max_value=2**64 - 1)
TEXT = st.text(max_size=80)


@given(TEXT, UINT64, UINT64, st.lists(st.binary(max_size=300), max_size=4))
def test_a_frame_is_what_protobuf_serializes(
    sha256: str, offset: int, total: int, pieces: list[bytes]
) -> None:
    expected = transfer_pb2.Chunk(
        sha256=sha256, offset=offset, total_size=total, data=b"".join(pieces)
    )

    assert chunk_frame(sha256, offset, total, pieces) == expected.SerializeToString()


@given(TEXT, UINT64, UINT64, st.binary(max_size=600), st.binary(max_size=40))
def test_a_chunk_is_read_as_protobuf_reads_it_unknown_fields_included(
    sha256: str, offset: int, total: int, data: bytes, unknown: bytes
) -> None:
    message = transfer_pb2.Chunk(sha256=sha256, offset=offset, total_size=total, data=data)
    # Unknown fields a newer sender might add: a varint, a fixed64, bytes, a fixed32.
    extra = b"\x28\x05" + b"\x31" + bytes(8) + b"\x3a" + bytes([len(unknown)]) + unknown
    extra += b"\x45" + bytes(4)
    raw = extra + message.SerializeToString()

    read = parse_chunk(raw)

    parsed = transfer_pb2.Chunk.FromString(raw)
    assert (read.sha256, read.offset, read.total_size) == (
        parsed.sha256,
        parsed.offset,
        parsed.total_size,
    )
    assert bytes(read.data) == parsed.data
    assert read.data.readonly


@given(st.binary(max_size=64))
def test_bytes_protobuf_refuses_are_refused(raw: bytes) -> None:
    try:
        transfer_pb2.Chunk.FromString(raw)
    except DecodeError:
        with pytest.raises(ValueError, match=r"not a corolla\.v1\.Chunk"):
            parse_chunk(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x10", "truncated varint"),
        (b"\x22\x05abc", "past the end"),
        (b"\x0a\x02\xff\xfe", "not UTF-8"),
        (b"\x10" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x23", "wire type 3"),
    ],
)
def test_a_malformed_chunk_names_what_is_wrong(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_chunk(raw)


@given(st.binary(min_size=0, max_size=2000), st.integers(min_value=1, max_value=700))
def test_frames_are_the_serialized_chunk_messages(payload: bytes, chunk_size: int) -> None:
    frames = list(chunk_frames(payload, chunk_size=chunk_size))
    messages = list(chunk_messages(payload, chunk_size=chunk_size))

    assert frames == [m.SerializeToString() for m in messages]
