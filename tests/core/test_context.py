from __future__ import annotations

import dataclasses
import pickle

import numpy as np

from corolla.core import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict


def make_context() -> Context:
    return Context(
        run_id=3,
        node_id=12,
        node_config={"partition-id": 1, "num-partitions": 10},
        run_config={"lr": 0.1, "local-epochs": 2, "model": "cnn", "verbose": False},
    )


def test_fields() -> None:
    context = make_context()

    assert (context.run_id, context.node_id) == (3, 12)
    assert context.node_config["partition-id"] == 1
    assert context.run_config["model"] == "cnn"


def test_state_starts_empty_and_is_not_shared() -> None:
    first, second = make_context(), make_context()

    first.state = first.state | {"m": MetricRecord({"rounds": 1})}

    assert first.state == RecordDict({"m": MetricRecord({"rounds": 1})})
    assert second.state == RecordDict()
    assert isinstance(second.state, RecordDict)


def test_state_is_replaced_not_mutated() -> None:
    context = make_context()
    before = context.state

    context.state = context.state | {"momentum": ArrayRecord({"w": np.zeros(3)})}

    assert len(before) == 0
    assert list(context.state) == ["momentum"]


def test_equality() -> None:
    assert make_context() == make_context()
    assert make_context() != dataclasses.replace(make_context(), node_id=13)
    assert make_context() != dataclasses.replace(
        make_context(), state=RecordDict({"c": ConfigRecord({"a": 1})})
    )


def test_pickle_round_trip() -> None:
    context = make_context()
    context.state = RecordDict(
        {"w": ArrayRecord({"w": np.arange(3.0)}), "c": ConfigRecord({"seen": [1, 2]})}
    )

    loaded = pickle.loads(pickle.dumps(context, protocol=5))

    assert loaded == context
    assert not loaded.state.array_records["w"]["w"].flags.writeable
