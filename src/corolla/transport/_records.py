"""Records and record dicts <-> their ``corolla.v1`` protobuf messages.

Array records name their arrays by hash or carry them inline (see ``_array_entries``);
metric and config records carry their values (see ``_values``). Malformed protobuf input
raises :class:`~corolla.core.RecordError`, or :class:`~corolla.core.CodecError` for array
references, so a receiver can answer any of them with ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from corolla.core import (
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    Record,
    RecordDict,
    RecordError,
)

from ._array_entries import (
    ArrayResolver,
    InlineBudget,
    array_record_from_proto,
    array_record_to_proto,
)
from ._encoded import EncodeCache, EncodedArray
from ._proto import records_pb2
from ._values import get_value, set_value, unique, valid_text

__all__ = ["record_dict_from_proto", "record_dict_to_proto"]


def _metric_record_to_proto(record: MetricRecord) -> records_pb2.MetricRecord:
    proto = records_pb2.MetricRecord()
    for name, value in record.items():
        set_value(proto.entries.add(name=name).value, value, f"MetricRecord entry {name!r}")
    return proto


def _metric_record_from_proto(proto: records_pb2.MetricRecord) -> MetricRecord:
    unique((e.name for e in proto.entries), "MetricRecord")
    return MetricRecord(
        (e.name, get_value(e.value, f"MetricRecord entry {e.name!r}")) for e in proto.entries
    )


def _config_record_to_proto(record: ConfigRecord) -> records_pb2.ConfigRecord:
    proto = records_pb2.ConfigRecord()
    for name, value in record.items():
        set_value(proto.entries.add(name=name).value, value, f"ConfigRecord entry {name!r}")
    return proto


def _config_record_from_proto(proto: records_pb2.ConfigRecord) -> ConfigRecord:
    unique((e.name for e in proto.entries), "ConfigRecord")
    return ConfigRecord(
        (e.name, get_value(e.value, f"ConfigRecord entry {e.name!r}")) for e in proto.entries
    )


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
    inline = InlineBudget(inline_bytes)
    proto = records_pb2.RecordDict()
    arrays: dict[str, EncodedArray] = {}
    with valid_text(RecordError, "message content"):
        for name, record in content.items():
            named = proto.records.add(name=name)
            if isinstance(record, ArrayRecord):
                named.array_record.CopyFrom(array_record_to_proto(record, arrays, cache, inline))
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
    unique((r.name for r in proto.records), "RecordDict")
    items: list[tuple[str, Record]] = []
    for named in proto.records:
        kind = named.WhichOneof("record")
        record: Record
        if kind == "array_record":
            record = array_record_from_proto(named.array_record, resolve)
        elif kind == "metric_record":
            record = _metric_record_from_proto(named.metric_record)
        elif kind == "config_record":
            record = _config_record_from_proto(named.config_record)
        else:
            raise RecordError(f"RecordDict entry {named.name!r} holds no record")
        items.append((named.name, record))
    return RecordDict(items)
