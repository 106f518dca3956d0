from __future__ import annotations

import copy
import math
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given

from corolla.core import (
    ArrayRecord,
    ConfigRecord,
    CorollaError,
    MetricRecord,
    RecordDict,
    RecordError,
)

from .strategies import array_records, config_records, metric_records, record_dicts

RECORD_TYPES = [ArrayRecord, MetricRecord, ConfigRecord, RecordDict]

#: A value each record type accepts.
VALID_VALUE: dict[type[Any], Any] = {
    ArrayRecord: np.zeros(1),
    MetricRecord: 1.0,
    ConfigRecord: "x",
    RecordDict: MetricRecord(),
}


# Shared mapping behaviour


@pytest.mark.parametrize("record_type", RECORD_TYPES)
@pytest.mark.parametrize("name", ["", 0, None, b"w", ("a",)], ids=repr)
def test_names_must_be_non_empty_strings(record_type: type[Any], name: Any) -> None:
    with pytest.raises(RecordError, match="keys must be non-empty strings") as info:
        record_type({name: VALID_VALUE[record_type]})
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, CorollaError)


@pytest.mark.parametrize("record_type", RECORD_TYPES)
def test_records_are_immutable_mappings(record_type: type[Any]) -> None:
    record = record_type()

    with pytest.raises(TypeError):
        record["a"] = 1
    with pytest.raises(TypeError):
        del record["a"]
    with pytest.raises(TypeError):
        hash(record)


def test_mapping_protocol() -> None:
    record = MetricRecord([("loss", 0.5), ("n", 3)])

    assert list(record) == ["loss", "n"]
    assert len(record) == 2
    assert "loss" in record
    assert "acc" not in record
    assert record.get("acc") is None
    assert dict(record) == {"loss": 0.5, "n": 3}
    with pytest.raises(KeyError, match=r"no entry 'acc'; it has \['loss', 'n'\]"):
        record["acc"]


def test_items_must_be_pairs() -> None:
    with pytest.raises(RecordError, match="from_numpy"):
        ArrayRecord([np.zeros(2), np.ones(2)])  # type: ignore[list-item]
    with pytest.raises(RecordError, match="pairs"):
        MetricRecord(["loss"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("record_type", "value"),
    [(ArrayRecord, np.zeros(2)), (MetricRecord, 1.0), (ConfigRecord, "x")],
)
def test_merge_returns_a_new_record(record_type: type[Any], value: Any) -> None:
    left = record_type({"a": value, "b": value})

    merged = left | {"b": value, "c": value}

    assert type(merged) is record_type
    assert list(merged) == ["a", "b", "c"]
    assert list(left) == ["a", "b"]  # unchanged


def test_merge_validates_the_new_entries() -> None:
    with pytest.raises(RecordError, match="'flag'"):
        MetricRecord({"n": 1}) | {"flag": True}


def test_merge_with_a_non_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        MetricRecord({"n": 1}) | [("m", 2)]  # type: ignore[operator]


# ArrayRecord


def test_array_record_views_without_copying() -> None:
    original = np.arange(6.0).reshape(2, 3)

    record = ArrayRecord({"w": original})

    stored = record["w"]
    assert np.shares_memory(stored, original)
    assert not stored.flags.writeable
    assert original.flags.writeable  # the caller's array is left alone
    with pytest.raises(ValueError, match="read-only"):
        stored[0, 0] = 1.0
    original[0, 0] = 42.0  # no copy, so the record sees the caller's later writes
    assert record["w"][0, 0] == 42.0


def test_array_record_keeps_a_read_only_array_as_is() -> None:
    array = np.zeros(3)
    array.flags.writeable = False

    assert ArrayRecord({"w": array})["w"] is array


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_array_record_stores_plain_ndarrays() -> None:
    masked = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    matrix = np.asmatrix(np.eye(2))

    record = ArrayRecord({"m": masked, "x": matrix})

    assert type(record["m"]) is np.ndarray
    assert type(record["x"]) is np.ndarray
    assert np.shares_memory(record["x"], matrix)


def test_array_record_makes_arrays_of_numbers() -> None:
    record = ArrayRecord({"s": 2.5, "i": 3, "l": [[1, 2], [3, 4]], "g": np.float32(1), "c": 1j})

    assert record["s"].shape == ()
    assert record["l"].shape == (2, 2)
    assert record["g"].dtype == np.float32
    assert record["c"].dtype == np.complex128
    assert all(not a.flags.writeable for a in record.values())


@pytest.mark.parametrize(
    "value",
    [
        "text",
        None,
        {"a": 1},
        np.array(["a"]),
        np.array([None]),
        np.zeros(2, dtype=[("a", "<i4")]),
        np.zeros(1, dtype="datetime64[s]"),
        [[1, 2], [3]],  # ragged
        ["a", 1],
    ],
    ids=["str", "None", "dict", "str-array", "object", "structured", "datetime", "ragged", "mixed"],
)
def test_array_record_rejects_non_numeric_values(value: Any) -> None:
    with pytest.raises(RecordError, match="ArrayRecord entry 'w'"):
        ArrayRecord({"w": value})


def test_array_record_equality() -> None:
    a = np.array([1.0, np.nan])
    record = ArrayRecord({"x": a, "y": np.arange(3)})

    assert record == ArrayRecord({"x": a.copy(), "y": np.arange(3)})
    assert record == ArrayRecord({"x": a.astype(">f8"), "y": np.arange(3)})  # byte order aside
    assert record != ArrayRecord({"y": np.arange(3), "x": a})  # order matters
    assert record != ArrayRecord({"x": a.astype(np.float32), "y": np.arange(3)})  # dtype
    assert record != ArrayRecord({"x": a.reshape(2, 1), "y": np.arange(3)})  # shape
    assert record != ArrayRecord({"x": a, "y": np.arange(1, 4)})  # values
    assert record != ArrayRecord({"x": a})
    assert record != {"x": a, "y": np.arange(3)}
    assert record != MetricRecord()


def test_array_record_from_numpy_and_to_numpy_keep_order() -> None:
    arrays = [np.full(2, i, dtype=np.int8) for i in range(12)]

    record = ArrayRecord.from_numpy(arrays)
    back = record.to_numpy()

    assert list(record) == [str(i) for i in range(12)]
    assert [int(a[0]) for a in back] == list(range(12))
    assert all(np.shares_memory(a, b) for a, b in zip(arrays, back, strict=True))


def test_array_record_nbytes() -> None:
    record = ArrayRecord({"a": np.zeros((3, 4), np.float32), "b": np.zeros(5, np.int8), "c": 1.0})

    assert record.nbytes == 3 * 4 * 4 + 5 + 8
    assert ArrayRecord().nbytes == 0


def test_array_record_merge_does_not_copy() -> None:
    a, b = np.zeros(4), np.ones(4)

    merged = ArrayRecord({"a": a}) | ArrayRecord({"b": b})

    assert np.shares_memory(merged["a"], a)
    assert np.shares_memory(merged["b"], b)


def test_array_record_repr_shows_dtypes_and_shapes() -> None:
    assert repr(ArrayRecord({"w": np.zeros((2, 3), np.float32)})) == (
        "ArrayRecord({'w': float32[2, 3]})"
    )


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_array_record_pickles(protocol: int) -> None:
    record = ArrayRecord({"w": np.arange(6.0).reshape(2, 3), "b": np.array(True)})

    loaded = pickle.loads(pickle.dumps(record, protocol=protocol))

    assert loaded == record
    assert not any(a.flags.writeable for a in loaded.values())


def test_array_record_pickles_out_of_band_without_copying() -> None:
    arrays = {"w": np.arange(1000.0).reshape(10, 100), "f": np.asfortranarray(np.eye(3))}
    record = ArrayRecord(arrays)
    buffers: list[pickle.PickleBuffer] = []

    data = pickle.dumps(record, protocol=5, buffer_callback=buffers.append)
    loaded = pickle.loads(data, buffers=buffers)

    assert len(buffers) == 2
    assert len(data) < 1000  # the elements went out of band
    assert loaded == record
    for name, array in arrays.items():
        assert np.shares_memory(loaded[name], array)
        assert not loaded[name].flags.writeable


def test_array_record_pickles_non_contiguous_arrays_in_band() -> None:
    strided = np.arange(20.0).reshape(4, 5)[::2, ::-2]
    record = ArrayRecord({"s": strided})
    buffers: list[pickle.PickleBuffer] = []

    loaded = pickle.loads(
        pickle.dumps(record, protocol=5, buffer_callback=buffers.append), buffers=buffers
    )

    assert loaded == record
    assert loaded["s"].tolist() == strided.tolist()


def test_array_record_deepcopy_copies() -> None:
    record = ArrayRecord({"w": np.zeros(3)})

    copied = copy.deepcopy(record)

    assert copied == record
    assert not np.shares_memory(copied["w"], record["w"])
    assert not copied["w"].flags.writeable


# MetricRecord


def test_metric_record_accepts_numbers_and_lists() -> None:
    record = MetricRecord(
        {
            "i": 3,
            "f": 0.5,
            "np_i": np.int64(7),
            "np_f": np.float32(0.25),
            "nan": math.nan,
            "li": [1, 2],
            "lf": (0.5, 1.5),
            "arr": np.array([1.0, 2.0]),
            "zero_d": np.array(4),
            "empty": [],
        }
    )

    assert record["i"] == 3
    assert type(record["np_i"]) is int
    assert type(record["np_f"]) is float
    assert record["lf"] == [0.5, 1.5]
    assert record["arr"] == [1.0, 2.0]
    assert type(record["arr"][0]) is float
    assert record["zero_d"] == 4
    assert record["empty"] == []


@pytest.mark.parametrize(
    "value",
    [
        True,
        np.bool_(False),
        [1, True],
        [True, False],
        np.array([True]),
        [1, 2.0],
        "0.5",
        None,
        1j,
        [[1.0]],
        np.zeros((2, 2)),
        {"a": 1},
    ],
    ids=repr,
)
def test_metric_record_rejects(value: Any) -> None:
    with pytest.raises(RecordError, match="MetricRecord entry 'm'"):
        MetricRecord({"m": value})


def test_metric_record_rejects_bools_with_a_hint() -> None:
    with pytest.raises(RecordError, match="bool is not a metric"):
        MetricRecord({"converged": True})


def test_metric_record_rejects_mixed_lists() -> None:
    with pytest.raises(RecordError, match="mixes int and float"):
        MetricRecord({"m": [1, 0.5]})


def test_list_values_cannot_be_changed_through_the_record() -> None:
    source = [1.0, 2.0]
    record = MetricRecord({"m": source})

    source.append(3.0)
    record["m"].append(4.0)  # type: ignore[union-attr, arg-type]

    assert record["m"] == [1.0, 2.0]


def test_metric_record_equality_tells_int_from_float() -> None:
    assert MetricRecord({"a": 1, "b": [0.5]}) == MetricRecord({"b": [0.5], "a": 1})
    assert MetricRecord({"a": math.nan}) == MetricRecord({"a": float("nan")})
    assert MetricRecord({"a": [math.nan]}) == MetricRecord({"a": [float("nan")]})
    assert MetricRecord({"a": 1}) != MetricRecord({"a": 1.0})
    assert MetricRecord({"a": [1]}) != MetricRecord({"a": [1.0]})
    assert MetricRecord({"a": [1]}) != MetricRecord({"a": [1, 1]})
    assert MetricRecord({"a": 1}) != ConfigRecord({"a": 1})


# ConfigRecord


@pytest.mark.parametrize(
    "value",
    [
        *(3, -(2**70), 0.5, math.inf, True, "text", "", b"\x00bytes"),
        *([1, 2], [0.5], [True], ["a"], [b"x", b""], []),
    ],
    ids=repr,
)
def test_config_record_accepts_documented_types(value: Any) -> None:
    record = ConfigRecord({"c": value})

    assert record["c"] == value
    assert type(record["c"]) is type(value)


def test_config_record_turns_numpy_scalars_and_tuples_into_python_values() -> None:
    record = ConfigRecord(
        {"i": np.int32(3), "f": np.float64(0.5), "b": np.bool_(True), "s": np.str_("x")}
        | {"t": ("a", "b")}
    )

    assert [type(v) for v in record.values()] == [int, float, bool, str, list]


@pytest.mark.parametrize(
    "value",
    [None, [1, True], [1, 0.5], [1, "a"], ["a", b"a"], [[1]], {"a": 1}, {1}, bytearray(b"x")],
    ids=repr,
)
def test_config_record_rejects(value: Any) -> None:
    with pytest.raises(RecordError, match="ConfigRecord entry 'c'"):
        ConfigRecord({"c": value})


def test_config_record_equality_tells_bool_from_int() -> None:
    assert ConfigRecord({"a": True, "b": "x"}) == ConfigRecord({"b": "x", "a": True})
    assert ConfigRecord({"a": True}) != ConfigRecord({"a": 1})
    assert ConfigRecord({"a": [True]}) != ConfigRecord({"a": [1]})
    assert ConfigRecord({"a": b"x"}) != ConfigRecord({"a": "x"})


# RecordDict


def test_record_dict_typed_accessors() -> None:
    weights = ArrayRecord({"w": np.zeros(2)})
    metrics = MetricRecord({"loss": 0.1})
    config = ConfigRecord({"lr": 0.01})
    more_weights = ArrayRecord({"b": np.ones(1)})

    content = RecordDict({"arrays": weights, "metrics": metrics, "config": config})
    content |= {"extra": more_weights}

    assert content.array_records == {"arrays": weights, "extra": more_weights}
    assert list(content.array_records) == ["arrays", "extra"]
    assert content.metric_records == {"metrics": metrics}
    assert content.config_records == {"config": config}
    assert content["metrics"] is metrics


def test_record_dict_accessors_return_fresh_dicts() -> None:
    content = RecordDict({"m": MetricRecord()})

    content.metric_records.clear()

    assert "m" in content


@pytest.mark.parametrize("value", [{"w": 1}, np.zeros(2), 1.0, None, [MetricRecord()]], ids=repr)
def test_record_dict_rejects_non_records(value: Any) -> None:
    with pytest.raises(RecordError, match="must be an ArrayRecord, MetricRecord or ConfigRecord"):
        RecordDict({"r": value})


def test_record_dict_equality() -> None:
    content = RecordDict({"a": ArrayRecord({"w": np.zeros(2)}), "m": MetricRecord({"n": 1})})

    assert content == RecordDict(
        {"a": ArrayRecord({"w": np.zeros(2)}), "m": MetricRecord({"n": 1})}
    )
    assert content != RecordDict({"a": ArrayRecord({"w": np.ones(2)}), "m": MetricRecord({"n": 1})})
    assert content != RecordDict({"a": ArrayRecord({"w": np.zeros(2)})})
    assert content != RecordDict(
        {"a": ArrayRecord({"w": np.zeros(2)}), "m": ConfigRecord({"n": 1})}
    )


# Property tests


@given(array_records)
def test_array_records_pickle_round_trip(record: ArrayRecord) -> None:
    buffers: list[pickle.PickleBuffer] = []

    data = pickle.dumps(record, protocol=5, buffer_callback=buffers.append)
    loaded = pickle.loads(data, buffers=buffers)

    assert loaded == record
    assert list(loaded) == list(record)
    for name in record:
        assert loaded[name].dtype == record[name].dtype
        assert loaded[name].tobytes() == record[name].tobytes()  # NaN payloads too


@given(metric_records)
def test_metric_records_pickle_round_trip(record: MetricRecord) -> None:
    assert pickle.loads(pickle.dumps(record)) == record


@given(config_records)
def test_config_records_pickle_round_trip(record: ConfigRecord) -> None:
    assert pickle.loads(pickle.dumps(record)) == record


@given(record_dicts)
def test_record_dicts_pickle_round_trip(content: RecordDict) -> None:
    loaded = pickle.loads(pickle.dumps(content, protocol=5))

    assert loaded == content
    assert list(loaded) == list(content)


@given(record_dicts)
def test_record_dicts_equal_themselves_and_copies(content: RecordDict) -> None:
    assert content == content
    assert content == RecordDict(content)
    assert content == copy.deepcopy(content)


@given(metric_records, metric_records)
def test_merge_is_dict_union(left: MetricRecord, right: MetricRecord) -> None:
    merged = left | right

    assert merged == MetricRecord(dict(left) | dict(right))
    assert list(merged) == list(dict(left) | dict(right))
