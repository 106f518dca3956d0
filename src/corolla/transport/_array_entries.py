"""Array entries: how records name their arrays on the wire, by hash or inline.

Arrays travel by reference: converting content yields the protobuf message plus a mapping
from content hash to :class:`EncodedArray`, which the sender streams as chunks (and only
those the receiver lacks); rebuilding content takes a resolver from hash to the decoded
array. Identical arrays share a hash, so they are shipped and stored once.

Small arrays may travel inline instead (``ArrayEntry.data``): a sender that passes
``inline_bytes`` goes through the arrays in record order and embeds each one whose
encoded size fits in what is left of that budget, leaving it out of the mapping. A
receiver checks an inline array's size and hash before decoding it, and needs no
resolver for it. A model of a few hundred kilobytes then costs one message each way
instead of a message plus two or three transfer calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from corolla.core import WIRE_DTYPES, ArrayRecord, CodecError, decode_array

from ._encoded import EncodeCache, EncodedArray, check_sha256, sha256_of
from ._proto import message_pb2, records_pb2
from ._values import unique

__all__ = [
    "INLINE_ARRAY_BYTES",
    "ArrayResolver",
    "InlineBudget",
    "array_entries",
    "array_record_from_proto",
    "array_record_to_proto",
    "check_array_entry",
    "embed_arrays",
    "inline_array",
    "inline_size",
]

#: Gives the decoded array for a content hash: a mapping, or a function raising KeyError.
ArrayResolver = Mapping[str, np.ndarray[Any, Any]] | Callable[[str], np.ndarray[Any, Any]]

_HEADER_FIXED = 16  # magic, dtype, ndim: see corolla.core's codec
_HEADER_DIM = 8

#: The most bytes of encoded arrays one message carries inline (``ArrayEntry.data``):
#: what ``corolla node`` and the link use. Arrays beyond it travel by reference.
INLINE_ARRAY_BYTES = 1024 * 1024


def check_array_entry(entry: records_pb2.ArrayEntry) -> None:
    """Check an array reference is well formed before anything is fetched for it.

    Raises
    ------
    CodecError
        If the dtype is not a wire dtype, the hash is not a hex SHA-256, or the encoded
        size is not the one dtype and shape imply.
    """
    if entry.dtype not in WIRE_DTYPES:
        raise CodecError(
            f"array {entry.name!r} has dtype {entry.dtype!r}; expected one of {sorted(WIRE_DTYPES)}"
        )
    check_sha256(entry.sha256)
    expected = _HEADER_FIXED + _HEADER_DIM * len(entry.shape)
    expected += np.dtype(entry.dtype).itemsize * math.prod(entry.shape)
    if entry.encoded_size != expected:
        raise CodecError(
            f"array {entry.name!r} declares {entry.encoded_size} encoded bytes; dtype "
            f"{entry.dtype} and shape {tuple(entry.shape)} need {expected}"
        )


class InlineBudget:
    """Bytes of encoded arrays a message may still carry inline."""

    __slots__ = ("remaining",)

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining

    def take(self, size: int) -> bool:
        if size > self.remaining:
            return False
        self.remaining -= size
        return True


def array_record_to_proto(
    record: ArrayRecord,
    arrays: dict[str, EncodedArray],
    cache: EncodeCache,
    inline: InlineBudget,
) -> records_pb2.ArrayRecord:
    proto = records_pb2.ArrayRecord()
    for name, array in record.items():
        encoded = cache.encode(array)
        entry = proto.entries.add(
            name=name,
            dtype=encoded.dtype,
            shape=encoded.shape,
            sha256=encoded.sha256,
            encoded_size=encoded.size,
        )
        if inline.take(encoded.size):
            entry.data = encoded.tobytes()
        else:
            arrays.setdefault(encoded.sha256, encoded)
    return proto


def inline_array(entry: records_pb2.ArrayEntry) -> np.ndarray[Any, Any]:
    """The array an entry carries inline, its size, hash and header checked.

    Raises
    ------
    CodecError
        If the entry is malformed, carries no inline bytes, or its bytes are not the
        array the entry declares (wrong size or hash, or another dtype or shape).
    """
    check_array_entry(entry)
    data = entry.data
    if not data:
        raise CodecError(f"array {entry.name!r} is not inline")
    if len(data) != entry.encoded_size:
        raise CodecError(
            f"array {entry.name!r} carries {len(data)} inline bytes; it declares "
            f"{entry.encoded_size}"
        )
    if sha256_of(data) != entry.sha256:
        raise CodecError(
            f"array {entry.name!r}: the inline bytes do not hash to sha256 {entry.sha256[:12]}"
        )
    return _checked(entry, decode_array(data))


def _checked(entry: records_pb2.ArrayEntry, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if array.dtype.newbyteorder("<").str != entry.dtype or array.shape != tuple(entry.shape):
        raise CodecError(
            f"array {entry.name!r} is declared {entry.dtype}{list(entry.shape)} but "
            f"sha256 {entry.sha256[:12]} resolves to {array.dtype.str}{list(array.shape)}"
        )
    return array


def _resolve(resolve: ArrayResolver, entry: records_pb2.ArrayEntry) -> np.ndarray[Any, Any]:
    if entry.data:
        return inline_array(entry)
    check_array_entry(entry)
    try:
        array = resolve[entry.sha256] if isinstance(resolve, Mapping) else resolve(entry.sha256)
    except KeyError:
        raise CodecError(f"array {entry.name!r} (sha256 {entry.sha256}) was not provided") from None
    return _checked(entry, array)


def array_record_from_proto(proto: records_pb2.ArrayRecord, resolve: ArrayResolver) -> ArrayRecord:
    unique((e.name for e in proto.entries), "ArrayRecord")
    return ArrayRecord((e.name, _resolve(resolve, e)) for e in proto.entries)


def _array_entries_of(content: records_pb2.RecordDict) -> Iterator[records_pb2.ArrayEntry]:
    for named in content.records:
        if named.WhichOneof("record") == "array_record":
            yield from named.array_record.entries


def inline_size(content: records_pb2.RecordDict) -> int:
    """Bytes of arrays ``content`` carries inline: at most :data:`INLINE_ARRAY_BYTES` in
    a message a receiver accepts."""
    return sum(len(entry.data) for entry in _array_entries_of(content))


def embed_arrays(
    content: records_pb2.RecordDict,
    read: Callable[[str], bytes],
    inline_bytes: int = INLINE_ARRAY_BYTES,
) -> None:
    """Embed, in place, the arrays ``content`` references by hash while they fit in what
    ``inline_bytes`` leaves beside the arrays already inline: the rule
    :func:`record_dict_to_proto` follows, for content already converted. ``read`` gives
    the encoded bytes of a hash."""
    inline = InlineBudget(inline_bytes - inline_size(content))
    for entry in _array_entries_of(content):
        if not entry.data and inline.take(entry.encoded_size):
            entry.data = read(entry.sha256)


def array_entries(
    proto: message_pb2.Message | records_pb2.RecordDict, *, include_inline: bool = False
) -> dict[str, records_pb2.ArrayEntry]:
    """The arrays a message or record dict references by hash: hash -> first entry naming it.

    These are the payloads a receiver fetches (``sha256``, ``encoded_size``) before
    :func:`message_from_proto` or :func:`record_dict_from_proto`. Arrays carried inline
    are left out, unless ``include_inline``: then an inline entry is listed for its hash.
    """
    content = proto.content if isinstance(proto, message_pb2.Message) else proto
    found: dict[str, records_pb2.ArrayEntry] = {}
    for entry in _array_entries_of(content):
        if not entry.data:
            found.setdefault(entry.sha256, entry)
        elif include_inline:
            found[entry.sha256] = entry
    return found
