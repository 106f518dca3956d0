"""Records, messages, user config and events <-> their ``corolla.v1`` protobuf messages.

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

Values the wire cannot carry (an int beyond 64 bits, an id outside ``uint64``) raise the
error of the object at fault (:class:`RecordError`, :class:`MessageError`). Malformed
protobuf input raises the same errors, or :class:`CodecError` for array references, so
a receiver can answer any of them with ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from corolla.core import (
    WIRE_DTYPES,
    ArrayRecord,
    CodecError,
    ConfigRecord,
    Error,
    Event,
    Message,
    MessageError,
    Metadata,
    MetricRecord,
    Record,
    RecordDict,
    RecordError,
    UserConfigValue,
    decode_array,
)

from ._encoded import EncodeCache, EncodedArray, check_sha256, sha256_of
from ._proto import message_pb2, records_pb2, run_pb2

__all__ = [
    "INLINE_ARRAY_BYTES",
    "ArrayResolver",
    "array_entries",
    "check_array_entry",
    "embed_arrays",
    "event_from_proto",
    "event_to_proto",
    "inline_array",
    "inline_size",
    "message_from_proto",
    "message_to_proto",
    "metadata_from_proto",
    "metadata_to_proto",
    "record_dict_from_proto",
    "record_dict_to_proto",
    "user_config_from_proto",
    "user_config_to_proto",
]

#: Gives the decoded array for a content hash: a mapping, or a function raising KeyError.
ArrayResolver = Mapping[str, np.ndarray[Any, Any]] | Callable[[str], np.ndarray[Any, Any]]

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = 2**64 - 1
_HEADER_FIXED = 16  # magic, dtype, ndim: see corolla.core._codec
_HEADER_DIM = 8

#: The most bytes of encoded arrays one message carries inline (``ArrayEntry.data``):
#: what ``corolla node`` and the link use. Arrays beyond it travel by reference.
INLINE_ARRAY_BYTES = 1024 * 1024


def _int64(value: int, where: str) -> int:
    if not _INT64[0] <= value <= _INT64[1]:
        raise RecordError(f"{where}: {value} does not fit the wire's signed 64-bit integers")
    return value


def _uint64(value: int, field: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= _UINT64:
        raise MessageError(f"metadata {field} must be an int in [0, 2**64), got {value!r}")
    return value


@contextlib.contextmanager
def _valid_text(error: type[RecordError | MessageError], what: str) -> Iterator[None]:
    # protobuf strings are UTF-8; a Python str may hold lone surrogates, which are not.
    try:
        yield
    except UnicodeEncodeError as exc:
        raise error(f"{what} holds a string that is not valid Unicode: {exc}") from exc


def _unique(names: Iterable[str], kind: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise RecordError(f"{kind} names {name!r} twice")
        seen.add(name)


# Arrays


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


class _InlineBudget:
    """Bytes of encoded arrays a message may still carry inline."""

    __slots__ = ("remaining",)

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining

    def take(self, size: int) -> bool:
        if size > self.remaining:
            return False
        self.remaining -= size
        return True


def _array_record_to_proto(
    record: ArrayRecord,
    arrays: dict[str, EncodedArray],
    cache: EncodeCache,
    inline: _InlineBudget,
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


def _array_record_from_proto(proto: records_pb2.ArrayRecord, resolve: ArrayResolver) -> ArrayRecord:
    _unique((e.name for e in proto.entries), "ArrayRecord")
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
    inline = _InlineBudget(inline_bytes - inline_size(content))
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


# Metrics and configs


def _scalar_kind(value: object) -> str:
    # bool before int: True is an int to isinstance.
    for kind, types in (
        ("bool", bool),
        ("int", int),
        ("float", float),
        ("string", str),
        ("bytes", bytes),
    ):
        if isinstance(value, types):
            return kind
    raise RecordError(f"no wire type for a value of type {type(value).__name__}")


def _set_value(
    proto: records_pb2.MetricValue | records_pb2.ConfigValue, value: Any, where: str
) -> None:
    if isinstance(value, list):
        kind = _scalar_kind(value[0]) if value else "int"
        if kind == "int":
            value = [_int64(v, where) for v in value]
        getattr(proto, f"{kind}_list").values.extend(value)
        if not value:  # an empty list must still select the oneof member
            getattr(proto, f"{kind}_list").SetInParent()
        return
    kind = _scalar_kind(value)
    if kind == "int":
        _int64(value, where)
    setattr(proto, f"{kind}_value", value)


def _get_value(proto: records_pb2.MetricValue | records_pb2.ConfigValue, where: str) -> Any:
    kind = proto.WhichOneof("value")
    if kind is None:
        raise RecordError(f"{where} has no value")
    if kind.endswith("_list"):
        return list(getattr(proto, kind).values)
    return getattr(proto, kind)


def _metric_record_to_proto(record: MetricRecord) -> records_pb2.MetricRecord:
    proto = records_pb2.MetricRecord()
    for name, value in record.items():
        _set_value(proto.entries.add(name=name).value, value, f"MetricRecord entry {name!r}")
    return proto


def _metric_record_from_proto(proto: records_pb2.MetricRecord) -> MetricRecord:
    _unique((e.name for e in proto.entries), "MetricRecord")
    return MetricRecord(
        (e.name, _get_value(e.value, f"MetricRecord entry {e.name!r}")) for e in proto.entries
    )


def _config_record_to_proto(record: ConfigRecord) -> records_pb2.ConfigRecord:
    proto = records_pb2.ConfigRecord()
    for name, value in record.items():
        _set_value(proto.entries.add(name=name).value, value, f"ConfigRecord entry {name!r}")
    return proto


def _config_record_from_proto(proto: records_pb2.ConfigRecord) -> ConfigRecord:
    _unique((e.name for e in proto.entries), "ConfigRecord")
    return ConfigRecord(
        (e.name, _get_value(e.value, f"ConfigRecord entry {e.name!r}")) for e in proto.entries
    )


# Record dicts


def record_dict_to_proto(
    content: RecordDict, cache: EncodeCache | None = None, *, inline_bytes: int = 0
) -> tuple[records_pb2.RecordDict, dict[str, EncodedArray]]:
    """Convert content to protobuf; arrays come back separately, keyed by content hash.

    ``cache`` shares encoded arrays across calls (e.g. one model sent to many nodes).
    Going through the arrays in record order, each one whose encoded size fits in what
    is left of ``inline_bytes`` is embedded in its entry, and is not in the mapping.

    Raises
    ------
    RecordError
        If an int does not fit in 64 bits.
    """
    cache = EncodeCache() if cache is None else cache
    inline = _InlineBudget(inline_bytes)
    proto = records_pb2.RecordDict()
    arrays: dict[str, EncodedArray] = {}
    with _valid_text(RecordError, "message content"):
        for name, record in content.items():
            named = proto.records.add(name=name)
            if isinstance(record, ArrayRecord):
                named.array_record.CopyFrom(_array_record_to_proto(record, arrays, cache, inline))
            elif isinstance(record, MetricRecord):
                named.metric_record.CopyFrom(_metric_record_to_proto(record))
            else:
                named.config_record.CopyFrom(_config_record_to_proto(record))
    return proto, arrays


def record_dict_from_proto(proto: records_pb2.RecordDict, resolve: ArrayResolver) -> RecordDict:
    """Rebuild content from protobuf, taking each referenced array from ``resolve``.

    Raises
    ------
    RecordError
        If a name is empty or repeated, or a record or value is missing or invalid.
    CodecError
        If an array reference is malformed, unresolved, or resolves to an array of
        another dtype or shape.
    """
    _unique((r.name for r in proto.records), "RecordDict")
    items: list[tuple[str, Record]] = []
    for named in proto.records:
        kind = named.WhichOneof("record")
        record: Record
        if kind == "array_record":
            record = _array_record_from_proto(named.array_record, resolve)
        elif kind == "metric_record":
            record = _metric_record_from_proto(named.metric_record)
        elif kind == "config_record":
            record = _config_record_from_proto(named.config_record)
        else:
            raise RecordError(f"RecordDict entry {named.name!r} holds no record")
        items.append((named.name, record))
    return RecordDict(items)


# Messages


def metadata_to_proto(metadata: Metadata) -> message_pb2.Metadata:
    """Convert message metadata to protobuf.

    Raises
    ------
    MessageError
        If an id is not an int in ``[0, 2**64)`` or a string is not valid Unicode.
    """
    with _valid_text(MessageError, "message metadata"):
        return _metadata_to_proto(metadata)


def _metadata_to_proto(metadata: Metadata) -> message_pb2.Metadata:
    return message_pb2.Metadata(
        run_id=_uint64(metadata.run_id, "run_id"),
        message_id=metadata.message_id,
        src_node_id=_uint64(metadata.src_node_id, "src_node_id"),
        dst_node_id=_uint64(metadata.dst_node_id, "dst_node_id"),
        reply_to_message_id=metadata.reply_to_message_id,
        group_id=metadata.group_id,
        message_type=metadata.message_type,
        ttl=metadata.ttl,
        created_at=metadata.created_at,
    )


def metadata_from_proto(proto: message_pb2.Metadata) -> Metadata:
    """Rebuild message metadata from protobuf."""
    return Metadata(
        run_id=proto.run_id,
        message_id=proto.message_id,
        src_node_id=proto.src_node_id,
        dst_node_id=proto.dst_node_id,
        reply_to_message_id=proto.reply_to_message_id,
        group_id=proto.group_id,
        message_type=proto.message_type,
        ttl=proto.ttl,
        created_at=proto.created_at,
    )


def message_to_proto(
    message: Message, cache: EncodeCache | None = None, *, inline_bytes: int = 0
) -> tuple[message_pb2.Message, dict[str, EncodedArray]]:
    """Convert a message to protobuf; its arrays come back separately, by content hash,
    except those embedded within ``inline_bytes`` (see :func:`record_dict_to_proto`).

    Raises
    ------
    MessageError
        If an id does not fit the wire.
    RecordError
        If an int of the content does not fit in 64 bits.
    """
    proto = message_pb2.Message(metadata=metadata_to_proto(message.metadata))
    arrays: dict[str, EncodedArray] = {}
    if message.has_content():
        content, arrays = record_dict_to_proto(message.content, cache, inline_bytes=inline_bytes)
        proto.content.CopyFrom(content)
    else:
        error = message.error
        if not _INT64[0] <= error.code <= _INT64[1]:
            raise MessageError(f"error code {error.code} does not fit in 64 bits")
        with _valid_text(MessageError, "message error"):
            proto.error.CopyFrom(message_pb2.Error(code=error.code, reason=error.reason))
    return proto, arrays


def message_from_proto(proto: message_pb2.Message, resolve: ArrayResolver) -> Message:
    """Rebuild a message from protobuf, taking each referenced array from ``resolve``.

    Raises
    ------
    MessageError
        If metadata is missing, the message type is invalid, or the message carries
        neither content nor an error.
    RecordError, CodecError
        As :func:`record_dict_from_proto`.
    """
    if not proto.HasField("metadata"):
        raise MessageError("message has no metadata")
    metadata = metadata_from_proto(proto.metadata)
    body = proto.WhichOneof("body")
    if body == "content":
        return Message(record_dict_from_proto(proto.content, resolve), metadata=metadata)
    if body == "error":
        return Message(error=Error(proto.error.code, proto.error.reason), metadata=metadata)
    raise MessageError("message carries neither content nor an error")


# User config


def user_config_to_proto(config: Mapping[str, UserConfigValue]) -> records_pb2.UserConfig:
    """Convert run config, node config or node attributes to protobuf.

    Raises
    ------
    RecordError
        If a key is not a non-empty string, or a value is not a bool, an int that fits
        in 64 bits, a float or a str.
    """
    proto = records_pb2.UserConfig()
    with _valid_text(RecordError, "config"):
        _fill_user_config(proto, config)
    return proto


def _fill_user_config(proto: records_pb2.UserConfig, config: Mapping[str, UserConfigValue]) -> None:
    for key, value in config.items():
        if not isinstance(key, str) or not key:
            raise RecordError(f"config keys must be non-empty strings, got {key!r}")
        kind = _scalar_kind(value)
        if kind == "bytes":
            raise RecordError(f"config value {key!r} must be bool, int, float or str, not bytes")
        if isinstance(value, int) and kind == "int":
            _int64(value, f"config value {key!r}")
        setattr(proto.entries.add(key=key).value, f"{kind}_value", value)


def user_config_from_proto(proto: records_pb2.UserConfig) -> dict[str, UserConfigValue]:
    """Rebuild run config, node config or node attributes from protobuf.

    Raises
    ------
    RecordError
        If a key is empty or repeated, or a value is missing.
    """
    config: dict[str, UserConfigValue] = {}
    for entry in proto.entries:
        if not entry.key or entry.key in config:
            raise RecordError(f"config key {entry.key!r} is empty or repeated")
        kind = entry.value.WhichOneof("value")
        if kind is None:
            raise RecordError(f"config value {entry.key!r} is missing")
        config[entry.key] = getattr(entry.value, kind)
    return config


# Events


def event_to_proto(event: Event, sequence: int) -> run_pb2.RunEvent:
    """Convert a run event, at position ``sequence`` of its run's log, to protobuf.

    Values of ``event.data`` that JSON cannot hold are written as their ``str``.
    """
    proto = run_pb2.RunEvent(
        sequence=sequence,
        run_id=event.run_id,
        kind=event.kind,
        time=event.time,
        data_json=json.dumps(dict(event.data), default=str, separators=(",", ":")),
    )
    if event.round is not None:
        proto.round = event.round
    if event.node_id is not None:
        proto.node_id = event.node_id
    return proto


def event_from_proto(proto: run_pb2.RunEvent) -> tuple[int, Event]:
    """Rebuild ``(sequence, event)`` from protobuf.

    Raises
    ------
    CodecError
        If ``data_json`` is not a JSON object.
    """
    try:
        data = json.loads(proto.data_json) if proto.data_json else {}
    except ValueError as exc:
        raise CodecError(f"event {proto.sequence} has malformed data: {exc}") from exc
    if not isinstance(data, dict):
        raise CodecError(f"event {proto.sequence} data is not a JSON object")
    event = Event(
        kind=proto.kind,
        run_id=proto.run_id,
        round=proto.round if proto.HasField("round") else None,
        node_id=proto.node_id if proto.HasField("node_id") else None,
        data=data,
        time=proto.time,
    )
    return proto.sequence, event
