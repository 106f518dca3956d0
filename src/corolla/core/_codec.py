"""Array codec: ``numpy.ndarray`` <-> bytes, carrying dtype and shape.

The encoded form is a small fixed header followed by the raw little-endian,
C-ordered element bytes::

    magic  b"CRA1"            4 bytes
    dtype  ascii, NUL-padded  8 bytes   (numpy ``dtype.str``, one of :data:`WIRE_DTYPES`)
    ndim   uint32 LE          4 bytes
    shape  uint64 LE each     8 * ndim bytes
    data   raw elements       itemsize * prod(shape) bytes

Decoding returns a read-only array that views the input buffer: no element is copied.
Malformed input (a bad magic, another dtype spelling, a wrong length, a shape numpy cannot
hold, bool bytes other than 0 and 1) raises :class:`CodecError` and nothing else.
Big-endian and non-contiguous inputs are converted on encode, so every encoded array is
little-endian and contiguous whatever machine wrote it.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import CodecError

__all__ = [
    "ArrayHeader",
    "BufferLike",
    "SUPPORTED_KINDS",
    "WIRE_DTYPES",
    "check_dtype",
    "decode_array",
    "encode_array",
    "encoded_size",
    "read_header",
    "to_wire_layout",
]

#: What the decoder accepts: any object exposing the buffer protocol as bytes.
BufferLike = bytes | bytearray | memoryview

MAGIC = b"CRA1"
_FIXED = struct.Struct("<4s8sI")
_DIM = struct.Struct("<Q")
_MAX_DIM = int(np.iinfo(np.intp).max)

#: numpy dtype kinds the codec carries: bool, signed and unsigned ints, floats, complex.
SUPPORTED_KINDS = frozenset("biufc")

#: The exact dtypes on the wire, as little-endian ``dtype.str``. ``longdouble`` is left out
#: on purpose: its layout differs between platforms, so its bytes mean nothing elsewhere.
WIRE_DTYPES = frozenset(
    {
        "|b1",
        "|i1",
        "<i2",
        "<i4",
        "<i8",
        "|u1",
        "<u2",
        "<u4",
        "<u8",
        "<f2",
        "<f4",
        "<f8",
        "<c8",
        "<c16",
    }
)
_WIRE_DTYPE_BYTES = frozenset(s.encode("ascii") for s in WIRE_DTYPES)

#: Most dimensions a header may claim (numpy's own limit is 32 or 64 by version).
MAX_NDIM = 64


class ArrayHeader:
    """The dtype and shape of an encoded array, and where its data starts."""

    __slots__ = ("data_offset", "dtype", "shape")

    def __init__(self, dtype: np.dtype[Any], shape: tuple[int, ...], data_offset: int) -> None:
        self.dtype = dtype
        self.shape = shape
        self.data_offset = data_offset

    @property
    def nbytes(self) -> int:
        return int(self.dtype.itemsize * _prod(self.shape))


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_dtype(dtype: np.dtype[Any]) -> None:
    """Raise :class:`CodecError` unless ``dtype`` is a plain numeric or bool dtype.

    Raises
    ------
    CodecError
        If ``dtype`` is not bool, (u)int8-64, float16/32/64 or complex64/128, in either
        byte order.
    """
    if (
        dtype.fields is not None
        or dtype.subdtype is not None
        or dtype.kind not in SUPPORTED_KINDS
        or dtype.newbyteorder("<").str not in WIRE_DTYPES
    ):
        raise CodecError(
            f"unsupported dtype {dtype!s}: arrays must be bool, int8-64, uint8-64, "
            "float16/32/64 or complex64/128"
        )


def to_wire_layout(array: npt.ArrayLike) -> np.ndarray[Any, Any]:
    """Return ``array`` as little-endian and C-contiguous, copying only when needed.

    Raises
    ------
    CodecError
        If the dtype is not one :func:`check_dtype` accepts.
    """
    a = np.asarray(array)
    check_dtype(a.dtype)
    # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
    return np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")


def encoded_size(array: np.ndarray[Any, Any]) -> int:
    """Number of bytes :func:`encode_array` produces for ``array``."""
    return _FIXED.size + _DIM.size * array.ndim + array.nbytes


def encode_array(array: npt.ArrayLike) -> bytes:
    """Encode an array as header + raw little-endian bytes.

    Raises
    ------
    CodecError
        If the dtype is not bool, int8-64, uint8-64, float16/32/64 or complex64/128.
    """
    a = to_wire_layout(array)
    dtype_str = a.dtype.str.encode("ascii")
    header = _FIXED.pack(MAGIC, dtype_str, a.ndim) + b"".join(_DIM.pack(d) for d in a.shape)
    # One copy of the elements, not two (``header + a.tobytes()`` would copy them twice).
    return b"".join((header, a.reshape(-1).view(np.uint8).data))


def read_header(buffer: BufferLike) -> ArrayHeader:
    """Parse the header at the start of ``buffer``.

    Raises
    ------
    CodecError
        If the buffer is truncated, has a bad magic, names an unsupported dtype or claims
        more dimensions, or a larger dimension, than numpy can hold.
    """
    view = memoryview(buffer).cast("B")
    if len(view) < _FIXED.size:
        raise CodecError(f"array buffer truncated: {len(view)} bytes, header needs {_FIXED.size}")
    magic, dtype_raw, ndim = _FIXED.unpack_from(view, 0)
    if magic != MAGIC:
        raise CodecError(f"not an encoded array: bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if ndim > MAX_NDIM:
        raise CodecError(f"array header claims {ndim} dimensions (at most {MAX_NDIM})")
    offset = _FIXED.size + _DIM.size * ndim
    if len(view) < offset:
        raise CodecError(
            f"array buffer truncated inside its shape: {len(view)} bytes, "
            f"a {ndim}-d header needs {offset}"
        )
    shape = tuple(_DIM.unpack_from(view, _FIXED.size + _DIM.size * i)[0] for i in range(ndim))
    # Matched against the exact strings the encoder writes, never handed to np.dtype()
    # unchecked: np.dtype parses a small language and raises even SyntaxError.
    dtype_text = dtype_raw.rstrip(b"\0")
    if dtype_text not in _WIRE_DTYPE_BYTES:
        raise CodecError(
            f"array header names an unsupported dtype {dtype_raw!r}; "
            f"expected one of {sorted(WIRE_DTYPES)}"
        )
    dtype = np.dtype(dtype_text.decode("ascii"))
    if any(d > _MAX_DIM for d in shape):
        raise CodecError(f"array header claims shape {shape}, too large for this machine")
    return ArrayHeader(dtype, shape, offset)


def decode_array(buffer: BufferLike) -> np.ndarray[Any, Any]:
    """Decode bytes produced by :func:`encode_array` without copying them.

    The result is read-only and keeps ``buffer`` alive.

    Raises
    ------
    CodecError
        If the buffer is malformed, truncated or has trailing bytes, or holds bool
        elements other than 0 and 1.
    """
    view = memoryview(buffer).cast("B")
    header = read_header(view)
    expected = header.data_offset + header.nbytes
    if len(view) != expected:
        raise CodecError(
            f"array buffer has {len(view)} bytes; dtype {header.dtype.str} and shape "
            f"{header.shape} need {expected}"
        )
    data = view[header.data_offset :].toreadonly()
    if header.dtype.kind == "b" and len(data) and np.frombuffer(data, np.uint8).max() > 1:
        # numpy would hand out bools that are neither True nor False.
        raise CodecError("array buffer holds bool elements that are not 0 or 1")
    array = np.frombuffer(data, dtype=header.dtype, count=_prod(header.shape))
    try:
        return array.reshape(header.shape)
    except ValueError as exc:  # more elements or dimensions than this numpy can index
        raise CodecError(f"array header claims an impossible shape {header.shape}: {exc}") from exc
