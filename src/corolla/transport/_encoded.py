"""Encoded arrays as they travel: the codec's bytes, hashed, without copying the elements.

:func:`corolla.core.encode_array` returns one ``bytes`` object, which copies every element.
On the wire an array is the very same byte sequence (header, then raw little-endian
elements), but :class:`EncodedArray` keeps it as two segments: a small header and a
read-only view of the array's own memory. Hashing and chunking walk the segments, so an
array that is already little-endian and C-contiguous is never copied before the socket.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from corolla.core import MAGIC, CodecError, to_wire_layout

__all__ = ["EncodedArray", "EncodeCache", "check_sha256", "sha256_of"]

_FIXED = struct.Struct("<4s8sI")
_DIM = struct.Struct("<Q")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_sha256(digest: str) -> str:
    """Return ``digest`` if it is a lower-case hex SHA-256.

    Raises
    ------
    CodecError
        Otherwise.
    """
    if not isinstance(digest, str) or _SHA256.fullmatch(digest) is None:
        raise CodecError(f"not a lower-case hex SHA-256: {digest!r}")
    return digest


def sha256_of(*segments: bytes | bytearray | memoryview) -> str:
    """Lower-case hex SHA-256 of the concatenation of ``segments``."""
    h = hashlib.sha256()
    for segment in segments:
        h.update(segment)
    return h.hexdigest()


def _header(array: np.ndarray[Any, Any]) -> bytes:
    # Byte for byte what corolla.core.encode_array writes before the elements (a test
    # pins the equality), so the hash is that of the codec's output.
    dims = b"".join(_DIM.pack(d) for d in array.shape)
    return _FIXED.pack(MAGIC, array.dtype.str.encode("ascii"), array.ndim) + dims


class EncodedArray:
    """An array in the codec's wire form, as a header and a view of the elements.

    Build one with :meth:`from_array`. The ``data`` view shares memory with the array
    (copied only when it was big-endian or not C-contiguous), and the hash is taken when
    encoding, so the array must not be changed in place until its bytes are sent. Records
    hold read-only views; only the owner of the original array could change it.
    """

    __slots__ = ("array", "data", "header", "sha256")

    def __init__(
        self, array: np.ndarray[Any, Any], header: bytes, data: memoryview, sha256: str
    ) -> None:
        self.array = array
        self.header = header
        self.data = data
        self.sha256 = sha256

    @classmethod
    def from_array(cls, array: npt.ArrayLike) -> EncodedArray:
        """Encode (and hash) ``array``.

        Raises
        ------
        CodecError
            If the dtype is not one the codec carries.
        """
        wire = to_wire_layout(array)
        header = _header(wire)
        data = wire.reshape(-1).view(np.uint8).data.toreadonly()
        return cls(wire, header, data, sha256_of(header, data))

    @property
    def dtype(self) -> str:
        """The wire dtype string, e.g. ``"<f4"``."""
        return str(self.array.dtype.str)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.array.shape)

    @property
    def size(self) -> int:
        """Number of bytes of the encoded form (header plus elements)."""
        return len(self.header) + len(self.data)

    def segments(self) -> tuple[memoryview, memoryview]:
        """The encoded bytes as (header, elements); their concatenation is the payload."""
        return memoryview(self.header), self.data

    def tobytes(self) -> bytes:
        """The encoded bytes in one object (a copy): what ``encode_array`` returns."""
        return b"".join(self.segments())

    def chunks(self, chunk_size: int, offset: int = 0) -> Iterator[tuple[int, memoryview]]:
        """``(offset, view)`` slices of the encoded bytes from ``offset``; see ``iter_chunks``."""
        from ._chunks import iter_chunks

        return iter_chunks(self.segments(), chunk_size, offset)

    def __repr__(self) -> str:
        return (
            f"EncodedArray({self.dtype}{list(self.shape)}, {self.size} bytes, {self.sha256[:12]})"
        )


class EncodeCache:
    """Remembers the encoded form of arrays by identity, for one batch of sends.

    Messages built from one record share its array objects (e.g. the global model sent
    to every node of a round), so a cache scoped to one ``Grid.send`` hashes the model
    once instead of once per node. Entries hold their arrays, so an id cannot be reused
    while cached; drop the cache when the batch is sent.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[np.ndarray[Any, Any], EncodedArray]] = {}

    def encode(self, array: np.ndarray[Any, Any]) -> EncodedArray:
        """The encoded form of ``array``, computed once per array object.

        Raises
        ------
        CodecError
            If the dtype is not one the codec carries.
        """
        hit = self._entries.get(id(array))
        if hit is not None and hit[0] is array:
            return hit[1]
        encoded = EncodedArray.from_array(array)
        self._entries[id(array)] = (array, encoded)
        return encoded

    def __len__(self) -> int:
        return len(self._entries)
