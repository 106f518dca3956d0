from __future__ import annotations

import contextlib
import gc
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corolla.core import CodecError, CorollaError, ErrorCode, decode_array, encode_array
from corolla.core._codec import encoded_size, read_header

from .strategies import ALL_DTYPES, WIRE_DTYPES, arrays, le_bytes, non_contiguous_arrays

HEADER = 16  # magic, dtype, ndim


def raw_header(
    dtype: bytes = b"<f4", shape: tuple[int, ...] = (), ndim: int | None = None
) -> bytes:
    """A header as the format describes it, built by hand rather than by the encoder."""
    ndim = len(shape) if ndim is None else ndim
    return (
        b"CRA1"
        + dtype.ljust(8, b"\0")
        + struct.pack("<I", ndim)
        + b"".join(struct.pack("<Q", d) for d in shape)
    )


def assert_round_trip(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    decoded = decode_array(encode_array(array))

    assert decoded.dtype == array.dtype.newbyteorder("<")
    assert decoded.dtype.byteorder in "=|<"
    assert decoded.shape == array.shape
    assert decoded.flags.c_contiguous
    assert decoded.tobytes() == le_bytes(array)  # bitwise: NaN payloads, -0.0
    assert np.array_equal(decoded, array, equal_nan=array.dtype.kind in "fc")
    return decoded


# Round trips


@given(arrays())
def test_round_trip_any_dtype_and_shape(array: np.ndarray[Any, Any]) -> None:
    assert_round_trip(array)


@given(non_contiguous_arrays())
def test_round_trip_non_contiguous(array: np.ndarray[Any, Any]) -> None:
    assert_round_trip(array)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_round_trip_0d(dtype: np.dtype[Any]) -> None:
    array = np.ones((), dtype=dtype)

    decoded = assert_round_trip(array)

    assert decoded.ndim == 0


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 0, 5), (2, 0, 3, 1)])
@pytest.mark.parametrize("dtype", ["<f8", ">i4", "|b1", "<c8"])
def test_round_trip_empty(shape: tuple[int, ...], dtype: str) -> None:
    array = np.zeros(shape, dtype=dtype)

    decoded = assert_round_trip(array)

    assert decoded.size == 0


@pytest.mark.parametrize(
    ("dtype", "bits"),
    [
        ("<f2", [0x7D01, 0xFC01, 0x7E00, 0xFE7F]),
        ("<f4", [0x7FC00001, 0x7FA00000, 0xFFFFFFFF, 0x7F800001]),
        (">f4", [0x7FC00001, 0x7FA00000, 0xFFFFFFFF, 0x7F800001]),
        ("<f8", [0x7FF0000000000001, 0x7FF8DEADBEEF0000, 0xFFF0000000000001]),
        (">f8", [0x7FF0000000000001, 0x7FF8DEADBEEF0000, 0xFFF0000000000001]),
    ],
)
def test_nan_payloads_survive_bitwise(dtype: str, bits: list[int]) -> None:
    dt = np.dtype(dtype)
    uint = np.dtype(f"{dt.byteorder}u{dt.itemsize}")
    array = np.array(bits, dtype=uint).view(dt)  # signalling NaNs and payloads

    decoded = decode_array(encode_array(array))

    assert np.isnan(decoded).all()
    assert decoded.view(f"<u{dt.itemsize}").tolist() == bits


def test_round_trip_complex_nan_parts() -> None:
    array = np.array([complex(np.nan, 1.0), complex(2.0, -np.inf), complex(-0.0, np.nan)], ">c16")

    decoded = assert_round_trip(array)

    assert np.signbit(decoded[2].real)


def test_round_trip_large_array() -> None:
    array = np.arange(3_000_000, dtype=np.float32).reshape(1000, 3000)

    encoded = encode_array(array)
    decoded = decode_array(encoded)

    assert len(encoded) == encoded_size(array) == HEADER + 2 * 8 + array.nbytes
    assert decoded.shape == array.shape
    assert np.array_equal(decoded, array)
    assert np.shares_memory(decoded, np.frombuffer(encoded, np.uint8))


def test_encode_accepts_array_likes() -> None:
    assert decode_array(encode_array([[1, 2], [3, 4]])).tolist() == [[1, 2], [3, 4]]
    assert decode_array(encode_array(2.5)).tolist() == 2.5
    assert decode_array(encode_array(np.float16(1.5))).dtype == np.float16


def test_encoding_is_the_documented_layout() -> None:
    array = np.array([[1, 2, 3]], dtype=">i2")  # big-endian in, little-endian out

    encoded = encode_array(array)

    assert encoded == raw_header(b"<i2", (1, 3)) + b"\x01\x00\x02\x00\x03\x00"
    assert encode_array(np.array(True)) == raw_header(b"|b1") + b"\x01"


@given(arrays())
def test_read_header_describes_the_array(array: np.ndarray[Any, Any]) -> None:
    header = read_header(encode_array(array))

    assert header.dtype == array.dtype.newbyteorder("<")
    assert header.shape == array.shape
    assert header.nbytes == array.nbytes
    assert header.data_offset == HEADER + 8 * array.ndim


# Zero copy


def data_range(array: np.ndarray[Any, Any]) -> tuple[int, int]:
    start = int(array.__array_interface__["data"][0])
    return start, start + array.nbytes


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda f: f.__name__)
def test_decode_views_the_buffer_without_copying(wrap: Any) -> None:
    array = np.arange(24, dtype="<f8").reshape(2, 3, 4)
    buffer = wrap(encode_array(array))

    decoded = decode_array(buffer)

    raw = np.frombuffer(buffer, np.uint8)
    assert np.shares_memory(decoded, raw)
    start, end = data_range(decoded)
    buf_start, buf_end = data_range(raw)
    assert (start, end) == (buf_start + HEADER + 3 * 8, buf_end)


def test_decoded_array_is_read_only() -> None:
    decoded = decode_array(bytearray(encode_array(np.zeros(4, np.int32))))

    assert not decoded.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        decoded[0] = 1
    with pytest.raises(ValueError):
        decoded.flags.writeable = True


def test_decoded_array_tracks_the_buffer_and_keeps_it_alive() -> None:
    buffer = bytearray(encode_array(np.zeros(3, np.uint8)))
    decoded = decode_array(buffer)

    buffer[-1] = 7  # visible through the array: it was not copied
    del buffer
    gc.collect()

    assert decoded.tolist() == [0, 0, 7]


def test_decode_a_slice_of_a_larger_buffer() -> None:
    first, second = encode_array(np.arange(5, dtype=np.int16)), encode_array(np.eye(2))
    stream = first + second

    view = memoryview(stream)
    a = decode_array(view[: len(first)])
    b = decode_array(view[len(first) :])

    assert a.tolist() == list(range(5))
    assert b.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert np.shares_memory(b, np.frombuffer(stream, np.uint8))


# Malformed input


def assert_codec_error(buffer: bytes, match: str) -> None:
    with pytest.raises(CodecError, match=match) as info:
        decode_array(buffer)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, CorollaError)
    assert info.value.code is ErrorCode.CODEC


@pytest.mark.parametrize("length", [0, 1, 4, 12, HEADER - 1])
def test_truncated_header(length: int) -> None:
    assert_codec_error(encode_array(np.zeros(3))[:length], "truncated")


def test_truncated_shape() -> None:
    assert_codec_error(raw_header(shape=(2, 3))[:-4], "truncated inside its shape")


def test_truncated_data() -> None:
    assert_codec_error(encode_array(np.zeros((2, 3)))[:-1], r"has 79 bytes.*need 80")


def test_trailing_bytes() -> None:
    assert_codec_error(encode_array(np.zeros((2, 3))) + b"\0", r"has 81 bytes.*need 80")


def test_bad_magic() -> None:
    assert_codec_error(b"CRA2" + encode_array(np.zeros(3))[4:], "bad magic")


@pytest.mark.parametrize(
    "dtype",
    [
        b"|O8",  # object
        b"<U4",  # str
        b"|S4",  # bytes
        b"|V8",  # void / structured
        b"i4,i4",  # structured
        b"(2,)f4",  # sub-array; np.dtype raises SyntaxError on some of these
        b"(2,",
        b"<M8[s]",  # datetime
        b"<f16",  # long double: not portable
        b">f4",  # the wire is little-endian
        b"float32",  # not the canonical spelling
        b"f4",
        b"",
        b"\xff\xfe\xfd",
        b"<f4\0junk",
    ],
)
def test_unsupported_dtype_in_header(dtype: bytes) -> None:
    assert_codec_error(raw_header(dtype, (1,)) + b"\0" * 16, "unsupported dtype")


@pytest.mark.parametrize("ndim", [65, 1000, 2**32 - 1])
def test_absurd_ndim(ndim: int) -> None:
    assert_codec_error(raw_header(ndim=ndim), f"claims {ndim} dimensions")


@pytest.mark.parametrize("shape", [(0, 2**63), (2**64 - 1, 0), (0, 2**62, 4), (0, 2**40, 2**40)])
def test_impossible_shape_of_no_elements(shape: tuple[int, ...]) -> None:
    assert_codec_error(raw_header(b"|u1", shape), "shape")


def test_huge_shape_does_not_allocate() -> None:
    assert_codec_error(raw_header(b"<f8", (2**40, 2**20)), "need")


def test_bool_bytes_other_than_0_and_1() -> None:
    assert_codec_error(raw_header(b"|b1", (3,)) + b"\x00\x01\x02", "not 0 or 1")


@pytest.mark.parametrize(
    "value",
    [
        np.array(["a", "b"]),
        np.array([b"a"]),
        np.array([object()], dtype=object),
        np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
        np.zeros(2, dtype=np.longdouble),
        ["mixed", 1],
    ],
    ids=["str", "bytes", "object", "structured", "datetime", "longdouble", "list-of-str"],
)
def test_encode_rejects_unsupported_dtypes(value: Any) -> None:
    if isinstance(value, np.ndarray) and value.dtype == np.longdouble and value.itemsize == 8:
        pytest.skip("long double is plain float64 on this platform")

    with pytest.raises(CodecError, match="unsupported dtype"):
        encode_array(value)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_array(b"CRA1" + data)


@settings(max_examples=200)
@given(arrays(dtype=st.sampled_from(WIRE_DTYPES)), st.data())
def test_corrupted_encodings_decode_or_raise_codec_error(
    array: np.ndarray[Any, Any], data: st.DataObject
) -> None:
    encoded = bytearray(encode_array(array))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))

    try:
        decoded = decode_array(bytes(encoded))
    except CodecError:
        return
    assert decoded.nbytes == len(encoded) - HEADER - 8 * decoded.ndim
