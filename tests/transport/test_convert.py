from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corolla.core import (
    ArrayRecord,
    CodecError,
    ConfigRecord,
    Error,
    Event,
    Message,
    MessageError,
    Metadata,
    MetricRecord,
    RecordDict,
    RecordError,
    decode_array,
    encode_array,
)
from corolla.transport import (
    INLINE_ARRAY_BYTES,
    EncodeCache,
    array_entries,
    check_array_entry,
    embed_arrays,
    event_from_proto,
    event_to_proto,
    inline_array,
    inline_size,
    message_from_proto,
    message_pb2,
    message_to_proto,
    record_dict_from_proto,
    record_dict_to_proto,
    records_pb2,
    user_config_from_proto,
    user_config_to_proto,
)

from ..core.strategies import WIRE_DTYPES, arrays, config_records, metric_records, record_dicts
from .strategies import messages, user_configs


def through_the_wire(
    content: RecordDict,
) -> tuple[RecordDict, records_pb2.RecordDict, dict[str, np.ndarray[Any, Any]]]:
    """Convert, serialize, parse and rebuild, with arrays travelling as encoded bytes."""
    proto, arrays_by_hash = record_dict_to_proto(content)
    received = records_pb2.RecordDict.FromString(proto.SerializeToString())
    store = {h: decode_array(e.tobytes()) for h, e in arrays_by_hash.items()}
    return record_dict_from_proto(received, store), proto, store


def meta(**changes: Any) -> Metadata:
    fields: dict[str, Any] = dict(
        run_id=7,
        message_id="m1",
        src_node_id=0,
        dst_node_id=3,
        reply_to_message_id="",
        group_id="1",
        message_type="train",
        ttl=60.0,
        created_at=1.5,
    )
    fields.update(changes)
    return Metadata(**fields)


# Round trips


@given(record_dicts)
def test_record_dict_round_trip(content: RecordDict) -> None:
    rebuilt, _, _ = through_the_wire(content)

    assert rebuilt == content
    assert list(rebuilt) == list(content)


@given(metric_records)
def test_metric_values_keep_their_type(record: MetricRecord) -> None:
    rebuilt, _, _ = through_the_wire(RecordDict({"m": record}))

    for name, value in record.items():
        got = rebuilt["m"][name]  # type: ignore[index]
        assert type(got) is type(value)
        if isinstance(value, list) and value:
            assert [type(v) for v in got] == [type(v) for v in value]


@given(config_records)
def test_config_values_keep_their_type(record: ConfigRecord) -> None:
    rebuilt, _, _ = through_the_wire(RecordDict({"c": record}))

    assert rebuilt["c"] == record
    for name, value in record.items():
        assert type(rebuilt["c"][name]) is type(value)  # type: ignore[index]


@given(messages())
def test_message_round_trip(message: Message) -> None:
    proto, arrays_by_hash = message_to_proto(message)
    received = message_pb2.Message.FromString(proto.SerializeToString())
    store = {h: decode_array(e.tobytes()) for h, e in arrays_by_hash.items()}

    rebuilt = message_from_proto(received, store)

    assert rebuilt == message
    assert rebuilt.has_error() == message.has_error()


@pytest.mark.parametrize("dtype", WIRE_DTYPES, ids=str)
@settings(max_examples=25)
@given(data=st.data())
def test_arrays_of_every_dtype_round_trip_bitwise(
    dtype: np.dtype[Any], data: st.DataObject
) -> None:
    array = data.draw(arrays(dtype=dtype))

    rebuilt, proto, _ = through_the_wire(RecordDict({"a": ArrayRecord({"x": array})}))

    out = rebuilt["a"]["x"]  # type: ignore[index]
    entry = proto.records[0].array_record.entries[0]
    assert out.dtype == dtype and out.shape == array.shape
    assert out.tobytes() == array.tobytes()
    assert entry.dtype == dtype.str and tuple(entry.shape) == array.shape


def test_error_message_round_trip() -> None:
    message = Message(error=Error(1, "ClientApp raised ValueError: boom"), metadata=meta())

    proto, arrays_by_hash = message_to_proto(message)

    assert arrays_by_hash == {}
    assert proto.WhichOneof("body") == "error"
    assert message_from_proto(proto, {}) == message


# Arrays travel beside the message, once per content


def test_array_hash_is_sha256_of_the_codec_bytes() -> None:
    array = np.arange(12, dtype=">f8").reshape(3, 4)

    proto, arrays_by_hash = record_dict_to_proto(RecordDict({"a": ArrayRecord({"w": array})}))

    entry = proto.records[0].array_record.entries[0]
    encoded = encode_array(array)
    assert entry.sha256 == hashlib.sha256(encoded).hexdigest()
    assert entry.encoded_size == len(encoded)
    assert arrays_by_hash[entry.sha256].tobytes() == encoded


def test_identical_arrays_are_shipped_once() -> None:
    w = np.ones((4, 4), np.float32)
    content = RecordDict({"a": ArrayRecord({"w": w, "w2": w.copy()}), "b": ArrayRecord({"w": w})})

    proto, arrays_by_hash = record_dict_to_proto(content)

    assert len(arrays_by_hash) == 1
    assert len(array_entries(proto)) == 1


def test_encode_cache_hashes_a_shared_array_once() -> None:
    record = ArrayRecord({"w": np.ones(1000, np.float32)})
    cache = EncodeCache()

    first = message_to_proto(Message(RecordDict({"m": record}), metadata=meta()), cache)[1]
    second = message_to_proto(
        Message(RecordDict({"m": record}), metadata=meta(dst_node_id=4)), cache
    )[1]

    assert len(cache) == 1
    ((h1, e1),) = first.items()
    ((h2, e2),) = second.items()
    assert h1 == h2 and e1 is e2


def test_resolver_may_be_a_function() -> None:
    content = RecordDict({"a": ArrayRecord({"w": np.arange(3)})})
    proto, arrays_by_hash = record_dict_to_proto(content)
    asked: list[str] = []

    def resolve(sha256: str) -> np.ndarray[Any, Any]:
        asked.append(sha256)
        return decode_array(arrays_by_hash[sha256].tobytes())

    assert record_dict_from_proto(proto, resolve) == content
    assert asked == list(arrays_by_hash)


def test_missing_array_is_a_codec_error() -> None:
    proto, _ = record_dict_to_proto(RecordDict({"a": ArrayRecord({"w": np.arange(3)})}))

    with pytest.raises(CodecError, match=r"'w'.*not provided"):
        record_dict_from_proto(proto, {})


def test_array_of_other_shape_than_declared_is_a_codec_error() -> None:
    proto, arrays_by_hash = record_dict_to_proto(
        RecordDict({"a": ArrayRecord({"w": np.arange(3)})})
    )
    (sha,) = arrays_by_hash

    with pytest.raises(CodecError, match="declared"):
        record_dict_from_proto(proto, {sha: np.arange(4)})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"dtype": "<f16"}, "dtype"),
        ({"dtype": "O"}, "dtype"),
        ({"sha256": "ABC"}, "SHA-256"),
        ({"encoded_size": 10}, "need 48"),
    ],
)
def test_malformed_array_entries_are_refused(change: dict[str, Any], match: str) -> None:
    entry = records_pb2.ArrayEntry(
        name="w", dtype="<f8", shape=[3], sha256="0" * 64, encoded_size=16 + 8 + 24
    )
    check_array_entry(entry)  # the unchanged entry is fine
    for field, value in change.items():
        setattr(entry, field, value)

    with pytest.raises(CodecError, match=match):
        check_array_entry(entry)


# What the wire cannot carry, and malformed input


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, [1, 2**64]])
def test_ints_beyond_64_bits_are_record_errors(value: Any) -> None:
    with pytest.raises(RecordError, match="64-bit"):
        record_dict_to_proto(RecordDict({"m": MetricRecord({"n": value})}))


def test_ids_outside_uint64_are_message_errors() -> None:
    message = Message(RecordDict(), metadata=meta(run_id=-1))

    with pytest.raises(MessageError, match="run_id"):
        message_to_proto(message)


def test_surrogates_are_record_errors() -> None:
    with pytest.raises(RecordError, match="Unicode"):
        record_dict_to_proto(RecordDict({"c": ConfigRecord({"s": "\udc80"})}))


def test_empty_lists_round_trip() -> None:
    content = RecordDict({"m": MetricRecord({"l": []}), "c": ConfigRecord({"l": []})})

    rebuilt, _, _ = through_the_wire(content)

    assert rebuilt == content


def test_nan_metric_round_trips() -> None:
    rebuilt, _, _ = through_the_wire(RecordDict({"m": MetricRecord({"loss": math.nan})}))

    assert math.isnan(rebuilt["m"]["loss"])  # type: ignore[index, arg-type]


def test_repeated_names_are_refused() -> None:
    proto = records_pb2.RecordDict()
    proto.records.add(name="a").metric_record.SetInParent()
    proto.records.add(name="a").metric_record.SetInParent()

    with pytest.raises(RecordError, match="twice"):
        record_dict_from_proto(proto, {})


def test_record_without_kind_is_refused() -> None:
    proto = records_pb2.RecordDict()
    proto.records.add(name="a")

    with pytest.raises(RecordError, match="no record"):
        record_dict_from_proto(proto, {})


def test_value_without_kind_is_refused() -> None:
    proto = records_pb2.RecordDict()
    proto.records.add(name="a").metric_record.entries.add(name="x")

    with pytest.raises(RecordError, match="no value"):
        record_dict_from_proto(proto, {})


def test_message_without_body_or_metadata_is_refused() -> None:
    with pytest.raises(MessageError, match="metadata"):
        message_from_proto(message_pb2.Message(), {})
    with pytest.raises(MessageError, match="neither"):
        message_from_proto(message_pb2.Message(metadata=message_pb2.Metadata()), {})


def test_invalid_message_type_is_refused() -> None:
    proto, _ = message_to_proto(Message(RecordDict(), metadata=meta()))
    proto.metadata.message_type = "dance"

    with pytest.raises(MessageError, match="message type"):
        message_from_proto(proto, {})


# User config and events


@given(
    user_configs.filter(
        lambda c: not any(isinstance(v, float) and math.isnan(v) for v in c.values())
    )
)
def test_user_config_round_trip(config: dict[str, Any]) -> None:
    proto = user_config_to_proto(config)
    rebuilt = user_config_from_proto(records_pb2.UserConfig.FromString(proto.SerializeToString()))

    assert rebuilt == config
    assert list(rebuilt) == list(config)
    assert [type(v) for v in rebuilt.values()] == [type(v) for v in config.values()]


@pytest.mark.parametrize("config", [{"": 1}, {"k": b"x"}, {"k": [1]}, {"k": 2**70}])
def test_invalid_user_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(RecordError):
        user_config_to_proto(config)


def test_event_round_trip() -> None:
    event = Event(
        "round.end", run_id=3, round=2, node_id=None, data={"loss": 0.5, "n": 4}, time=9.0
    )

    sequence, rebuilt = event_from_proto(event_to_proto(event, 17))

    assert sequence == 17
    assert rebuilt == event


def test_event_with_malformed_json_is_a_codec_error() -> None:
    proto = event_to_proto(Event("x"), 1)
    proto.data_json = "[1"

    with pytest.raises(CodecError):
        event_from_proto(proto)


# Small arrays travel inline


def _inline_entry(array: np.ndarray[Any, Any], name: str = "w") -> records_pb2.ArrayEntry:
    """The entry of ``array`` sent inline, after a trip through the wire."""
    proto, arrays_by_hash = record_dict_to_proto(
        RecordDict({"a": ArrayRecord({name: array})}), inline_bytes=INLINE_ARRAY_BYTES
    )
    assert arrays_by_hash == {}
    received = records_pb2.RecordDict.FromString(proto.SerializeToString())
    return received.records[0].array_record.entries[0]


@settings(max_examples=50)
@given(record_dicts, st.integers(0, 4096))
def test_embedding_arrays_later_follows_the_senders_rule(content: RecordDict, budget: int) -> None:
    # Content sent by reference, then given its arrays inline (what the link does before
    # pushing a message), is what a sender inlining with that budget writes.
    by_reference, payloads = record_dict_to_proto(content)
    expected, _ = record_dict_to_proto(content, inline_bytes=budget)

    embed_arrays(by_reference, lambda sha256: payloads[sha256].tobytes(), budget)

    assert by_reference == expected
    assert inline_size(by_reference) <= budget


@settings(max_examples=50)
@given(record_dicts)
def test_content_whose_arrays_fit_inline_rebuilds_without_a_resolver(content: RecordDict) -> None:
    proto, arrays_by_hash = record_dict_to_proto(content, inline_bytes=INLINE_ARRAY_BYTES)
    received = records_pb2.RecordDict.FromString(proto.SerializeToString())

    rebuilt = record_dict_from_proto(received, {})

    assert arrays_by_hash == {}
    assert rebuilt == content
    assert list(rebuilt) == list(content)
    assert array_entries(received) == {}


@settings(max_examples=50)
@given(messages())
def test_a_message_whose_arrays_fit_inline_rebuilds_without_a_resolver(message: Message) -> None:
    proto, arrays_by_hash = message_to_proto(message, inline_bytes=INLINE_ARRAY_BYTES)
    received = message_pb2.Message.FromString(proto.SerializeToString())

    rebuilt = message_from_proto(received, {})

    assert arrays_by_hash == {}
    assert rebuilt == message


def test_arrays_beyond_the_inline_budget_travel_by_reference_in_record_order() -> None:
    first, second, third = (np.full(10, i, dtype=np.float64) for i in range(3))
    size = len(encode_array(first))  # the three have the same encoded size
    content = RecordDict(
        {
            "a": ArrayRecord({"first": first, "second": second}),
            "m": MetricRecord({"n": 1}),
            "b": ArrayRecord({"third": third}),
        }
    )

    proto, arrays_by_hash = record_dict_to_proto(content, inline_bytes=2 * size)

    entries = [
        e for r in proto.records if r.HasField("array_record") for e in r.array_record.entries
    ]
    assert [e.name for e in entries] == ["first", "second", "third"]
    assert entries[0].data == encode_array(first)
    assert entries[1].data == encode_array(second)
    assert entries[2].data == b""
    assert list(arrays_by_hash) == [entries[2].sha256]
    rebuilt = record_dict_from_proto(
        proto, {h: decode_array(e.tobytes()) for h, e in arrays_by_hash.items()}
    )
    assert rebuilt == content


def test_no_inline_budget_sends_every_array_by_reference() -> None:
    content = RecordDict({"a": ArrayRecord({"w": np.arange(3)})})

    proto, arrays_by_hash = record_dict_to_proto(content)

    assert proto.records[0].array_record.entries[0].data == b""
    assert len(arrays_by_hash) == 1


def test_inline_array_decodes_the_declared_array() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)

    decoded = inline_array(_inline_entry(array))

    assert decoded.dtype == array.dtype and decoded.tobytes() == array.tobytes()
    assert decoded.shape == (2, 3)


def test_inline_bytes_that_do_not_hash_to_the_entry_are_a_codec_error() -> None:
    entry = _inline_entry(np.arange(6, dtype=np.float32))
    tampered = bytearray(entry.data)
    tampered[-1] ^= 0xFF
    entry.data = bytes(tampered)
    proto = records_pb2.RecordDict()
    proto.records.add(name="a").array_record.entries.append(entry)

    with pytest.raises(CodecError, match=r"'w'.*do not hash"):
        inline_array(entry)
    with pytest.raises(CodecError, match=r"'w'.*do not hash"):
        record_dict_from_proto(proto, {})


@pytest.mark.parametrize("length", [0, 10, 47], ids=["empty", "short", "one-short"])
def test_inline_bytes_of_another_length_than_declared_are_a_codec_error(length: int) -> None:
    entry = _inline_entry(np.arange(6, dtype=np.float32))
    assert entry.encoded_size == 48
    entry.data = entry.data[:length]
    if length:  # the hash matches the bytes sent: the length alone is at fault
        entry.sha256 = hashlib.sha256(entry.data).hexdigest()

    with pytest.raises(CodecError, match=r"'w'.*(inline bytes|not inline)"):
        inline_array(entry)


def test_inline_bytes_too_long_are_a_codec_error() -> None:
    entry = _inline_entry(np.arange(6, dtype=np.float32))
    entry.data += b"\x00" * 4
    entry.sha256 = hashlib.sha256(entry.data).hexdigest()
    proto = records_pb2.RecordDict()
    proto.records.add(name="a").array_record.entries.append(entry)

    with pytest.raises(CodecError, match=r"'w' carries 52 inline bytes; it declares 48"):
        record_dict_from_proto(proto, {})


@pytest.mark.parametrize(
    "sent",
    [np.arange(6, dtype=np.float32).reshape(3, 2), np.arange(6, dtype=np.int32).reshape(2, 3)],
    ids=["other-shape", "other-dtype"],
)
def test_inline_bytes_whose_header_contradicts_the_entry_are_a_codec_error(
    sent: np.ndarray[Any, Any],
) -> None:
    # The entry declares float32 (2, 3); the bytes, of the same size and with a matching
    # hash, encode another shape or dtype.
    entry = _inline_entry(np.zeros((2, 3), dtype=np.float32))
    entry.data = encode_array(sent)
    entry.sha256 = hashlib.sha256(entry.data).hexdigest()
    check_array_entry(entry)  # the entry itself is well formed
    proto = records_pb2.RecordDict()
    proto.records.add(name="a").array_record.entries.append(entry)

    with pytest.raises(CodecError, match=r"'w' is declared <f4\[2, 3\]"):
        record_dict_from_proto(proto, {})


def test_array_entries_leave_inline_arrays_out_unless_asked() -> None:
    small, large = np.arange(3, dtype=np.int8), np.arange(100, dtype=np.float64)
    content = RecordDict({"a": ArrayRecord({"small": small, "large": large})})
    proto, arrays_by_hash = record_dict_to_proto(content, inline_bytes=len(encode_array(small)))
    small_entry, large_entry = proto.records[0].array_record.entries

    referenced = array_entries(proto)
    every = array_entries(proto, include_inline=True)

    assert small_entry.data and not large_entry.data
    assert list(referenced) == [large_entry.sha256] == list(arrays_by_hash)
    assert every == {small_entry.sha256: small_entry, large_entry.sha256: large_entry}
