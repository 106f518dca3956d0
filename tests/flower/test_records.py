"""Records: Flower's <-> Corolla's, names and order kept, and a clear error for what the
other side cannot hold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flwr import app as flwr_app
from hypothesis import given

from corolla.core import ArrayRecord, ConfigRecord, MetricRecord, RecordDict, RecordError
from corolla.flower import (
    array_record_from_flower,
    array_record_to_flower,
    config_record_from_flower,
    config_record_to_flower,
    metric_record_from_flower,
    metric_record_to_flower,
    record_dict_from_flower,
    record_dict_to_flower,
)

from ..core.strategies import array_records, config_records, metric_records, record_dicts
from .strategies import (
    flower_array_records,
    flower_config_records,
    flower_metric_records,
    flower_record_dicts,
)


@given(record_dicts)
def test_a_record_dict_survives_a_trip_through_flower(records):
    # Act
    back = record_dict_from_flower(record_dict_to_flower(records))

    # Assert: equal records (NaN included), names in the same order
    assert back == records
    assert list(back) == list(records)


@given(flower_record_dicts)
def test_a_flower_record_dict_survives_a_trip_through_corolla(records):
    # Act
    back = record_dict_to_flower(record_dict_from_flower(records))

    # Assert: Flower's own equality, arrays compared by their .npy bytes
    assert back == records
    assert list(back) == list(records)
    assert [type(r) for r in back.values()] == [type(r) for r in records.values()]


@given(array_records)
def test_an_array_record_survives_a_trip_through_flower(record):
    # Act
    back = array_record_from_flower(array_record_to_flower(record))

    # Assert
    assert back == record and list(back) == list(record)


@given(flower_array_records)
def test_a_flower_array_record_survives_a_trip_through_corolla(record):
    # Act
    back = array_record_to_flower(array_record_from_flower(record))

    # Assert
    assert back == record and list(back) == list(record)


@given(metric_records)
def test_a_metric_record_survives_a_trip_through_flower(record):
    # Act
    back = metric_record_from_flower(metric_record_to_flower(record))

    # Assert
    assert back == record and list(back) == list(record)


@given(flower_metric_records)
def test_a_flower_metric_record_survives_a_trip_through_corolla(record):
    # Act
    back = metric_record_to_flower(metric_record_from_flower(record))

    # Assert
    assert back == record and list(back) == list(record)


@given(config_records)
def test_a_config_record_survives_a_trip_through_flower(record):
    # Act
    back = config_record_from_flower(config_record_to_flower(record))

    # Assert
    assert back == record and list(back) == list(record)


@given(flower_config_records)
def test_a_flower_config_record_survives_a_trip_through_corolla(record):
    # Act
    back = config_record_to_flower(config_record_from_flower(record))

    # Assert: types too (Flower's equality would take True for 1)
    assert back == record and list(back) == list(record)
    assert [type(v) for v in back.values()] == [type(v) for v in record.values()]


def test_arrays_read_from_a_flower_record_view_its_bytes():
    # Arrange
    flower = flwr_app.ArrayRecord({"w": flwr_app.Array(np.ones((64, 64), dtype=np.float32))})

    # Act
    record = array_record_from_flower(flower)

    # Assert
    assert np.shares_memory(record["w"], np.frombuffer(flower["w"].data, dtype=np.uint8))


def test_arrays_of_a_flower_record_dict_are_viewed_not_copied():
    # Arrange
    flower = flwr_app.RecordDict(
        {"model": flwr_app.ArrayRecord({"w": flwr_app.Array(np.arange(100.0))})}
    )

    # Act
    records = record_dict_from_flower(flower)

    # Assert
    model = records.array_records["model"]
    assert np.shares_memory(model["w"], np.frombuffer(flower["model"]["w"].data, np.uint8))


def test_the_order_of_names_is_kept_both_ways():
    # Arrange
    names = ["z", "a", "m", "b"]
    records = RecordDict(
        {n: MetricRecord({m: 1 for m in reversed(names)}) for n in names}
        | {"arrays": ArrayRecord({n: np.zeros(1) for n in names})}
    )

    # Act
    flower = record_dict_to_flower(records)
    back = record_dict_from_flower(flower)

    # Assert
    assert list(flower) == [*names, "arrays"] == list(back)
    assert list(flower["z"]) == list(reversed(names)) == list(back["z"])
    assert list(flower["arrays"]) == names == list(back["arrays"])


def test_a_flower_metric_that_is_a_numpy_float_becomes_a_python_float():
    # Arrange: Flower takes np.float64, a subclass of float
    flower = flwr_app.MetricRecord({"loss": np.float64(0.25)})

    # Act
    record = metric_record_from_flower(flower)

    # Assert
    assert type(record["loss"]) is float and record["loss"] == 0.25


def test_lists_are_not_shared_with_the_flower_record():
    # Arrange
    flower = flwr_app.MetricRecord({"losses": [1.0, 2.0]})
    record = metric_record_from_flower(flower)
    flower_again = metric_record_to_flower(record)

    # Act: a Flower app changes its lists in place
    flower["losses"].append(3.0)  # type: ignore[union-attr]
    flower_again["losses"].append(4.0)  # type: ignore[union-attr]

    # Assert
    assert record["losses"] == [1.0, 2.0]


def test_every_corolla_value_goes_to_flower():
    # Arrange: every kind of value Corolla's metric and config records hold
    metrics = MetricRecord({"i": 2**70, "f": float("inf"), "li": [], "lf": [0.5]})
    configs = ConfigRecord(
        {"b": True, "i": -1, "f": 0.5, "s": "x", "y": b"\0", "lb": [False], "ls": ["a"]}
    )

    # Act
    flower_metrics = metric_record_to_flower(metrics)
    flower_configs = config_record_to_flower(configs)

    # Assert
    assert dict(flower_metrics) == dict(metrics)
    assert dict(flower_configs) == dict(configs)


def _flower_record_with(kind: str, name: str, value: Any) -> flwr_app.RecordDict:
    record: Any
    if kind == "array":
        record = flwr_app.ArrayRecord({name: value})
    elif kind == "metric":
        record = flwr_app.MetricRecord({name: value})
    else:
        record = flwr_app.ConfigRecord({name: value})
    return flwr_app.RecordDict({"rec": record})


@pytest.mark.parametrize(
    ("kind", "name", "value", "expected"),
    [
        ("metric", "m", [1, True], r"'rec'.*'m'.*bool"),
        ("config", "c", [1, True], r"'rec'.*'c'.*mixes types"),
        ("metric", "", 1.0, r"'rec'.*non-empty"),
        ("config", "", "x", r"'rec'.*non-empty"),
        ("array", "", flwr_app.Array(np.zeros(1)), r"'rec'.*non-empty"),
        ("array", "names", flwr_app.Array(np.array(["ab"])), r"'rec'.*'names'.*dtype <U2"),
        ("array", "long", flwr_app.Array(np.zeros(1, np.longdouble)), r"'rec'.*'long'.*dtype"),
        (
            "array",
            "t",
            flwr_app.Array(dtype="f4", shape=(1,), stype="torch.Tensor", data=b"\0" * 4),
            r"'rec'.*'t'.*stype 'torch.Tensor'",
        ),
    ],
    ids=[
        "metric-list-with-bool",
        "config-list-int-and-bool",
        "metric-empty-name",
        "config-empty-name",
        "array-empty-name",
        "array-of-strings",
        "array-of-longdouble",
        "array-of-other-stype",
    ],
)
def test_what_corolla_cannot_hold_is_refused_naming_record_and_entry(kind, name, value, expected):
    # Arrange
    flower = _flower_record_with(kind, name, value)

    # Act / Assert
    with pytest.raises(RecordError, match=expected):
        record_dict_from_flower(flower)


def test_a_record_dict_entry_with_an_empty_name_is_refused():
    # Arrange
    flower = flwr_app.RecordDict({"": flwr_app.MetricRecord()})

    # Act / Assert
    with pytest.raises(RecordError, match="non-empty"):
        record_dict_from_flower(flower)


def test_flowers_legacy_mark_of_no_arrays_reads_as_an_empty_array_record():
    # Arrange: what Flower's legacy API writes for parameters without tensors
    empty = flwr_app.Array(data=b"", dtype="", stype="", shape=())
    record = flwr_app.ArrayRecord({"_empty": empty})

    # Act / Assert
    assert array_record_from_flower(record) == ArrayRecord()


@given(record_dicts)
def test_the_typed_views_of_a_converted_record_dict_are_flowers(records):
    # Arrange: the same records, converted and as Flower builds them itself
    converted = record_dict_to_flower(records)
    flowers = flwr_app.RecordDict(dict(converted.items()))

    # Act / Assert: each view holds the same records, in the same order
    for view in ("array_records", "metric_records", "config_records"):
        ours, theirs = getattr(converted, view), getattr(flowers, view)
        assert list(ours.items()) == list(theirs.items())
        assert type(ours) is type(theirs)


def test_a_change_through_a_view_of_a_converted_record_dict_reaches_it():
    # Arrange
    converted = record_dict_to_flower(RecordDict({"m": MetricRecord({"x": 1.0})}))
    added = flwr_app.MetricRecord({"y": 2.0})

    # Act
    view = converted.metric_records
    view["more"] = added
    del view["m"]

    # Assert: as with Flower's own views
    assert list(converted.items()) == [("more", added)]


def test_a_converted_record_dict_deflates_as_a_flower_record_dict():
    # Arrange
    records = RecordDict({"m": MetricRecord({"x": 1.0}), "c": ConfigRecord({"k": "v"})})
    converted = record_dict_to_flower(records)

    # Act
    deflated = converted.deflate()

    # Assert: Flower's wire format names the class; this one reads as Flower's own
    assert deflated == flwr_app.RecordDict(dict(converted.items())).deflate()
    assert deflated.startswith(b"RecordDict")
