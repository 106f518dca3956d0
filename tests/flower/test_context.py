"""Contexts: Flower's <-> Corolla's, and a Flower ClientApp's state kept across rounds."""

from __future__ import annotations

import numpy as np
import pytest
from flwr import app as flwr_app
from hypothesis import given
from hypothesis import strategies as st

from corolla.core import ArrayRecord, Context, MetricRecord, RecordDict, RecordError
from corolla.flower import context_from_flower, context_to_flower

from ..core.strategies import record_dicts
from ..transport.strategies import uint64, user_configs
from .strategies import flower_contexts

corolla_contexts = st.builds(
    Context,
    run_id=uint64,
    node_id=uint64,
    node_config=user_configs,
    run_config=user_configs,
    state=record_dicts,
)


def _fields(context: Context | flwr_app.Context) -> tuple[object, ...]:
    return (
        context.run_id,
        context.node_id,
        dict(context.node_config),
        dict(context.run_config),
    )


@given(corolla_contexts)
def test_a_context_survives_a_trip_through_flower(context):
    # Act
    back = context_from_flower(context_to_flower(context))

    # Assert: NaN config values are the same objects, so dict equality holds
    assert _fields(back) == _fields(context)
    assert back.state == context.state


@given(flower_contexts)
def test_a_flower_context_survives_a_trip_through_corolla(context):
    # Act
    back = context_to_flower(context_from_flower(context))

    # Assert
    assert _fields(back) == _fields(context)
    assert back.state == context.state


def _flower_client_step(context: flwr_app.Context) -> None:
    """What a Flower ClientApp does with its state: count rounds, keep a running sum."""
    state = context.state
    rounds = state["progress"]["rounds"] if "progress" in state else 0
    total = state["model"]["sum"].numpy() if "model" in state else np.zeros(3)
    state["progress"] = flwr_app.MetricRecord({"rounds": rounds + 1})
    state["model"] = flwr_app.ArrayRecord({"sum": flwr_app.Array(total + np.arange(3.0))})


def test_a_flower_client_apps_state_is_kept_across_rounds():
    # Arrange: the node's context, as Corolla keeps it between rounds
    context = Context(run_id=1, node_id=5, node_config={"partition-id": 2}, run_config={})

    # Act: three rounds of convert in, run the Flower app, convert back
    for _ in range(3):
        flower = context_to_flower(context)
        _flower_client_step(flower)
        context = context_from_flower(flower)

    # Assert
    assert context.state["progress"] == MetricRecord({"rounds": 3})
    assert context.state["model"] == ArrayRecord({"sum": np.arange(3.0) * 3})
    assert context.node_config == {"partition-id": 2}


def test_state_arrays_read_back_from_flower_view_its_bytes():
    # Arrange
    array = flwr_app.Array(np.ones(100))
    state = flwr_app.RecordDict({"model": flwr_app.ArrayRecord({"w": array})})
    flower = flwr_app.Context(1, 2, {}, state, {})

    # Act
    context = context_from_flower(flower)

    # Assert
    w = context.state.array_records["model"]["w"]
    assert np.shares_memory(w, np.frombuffer(array.data, dtype=np.uint8))


def test_configs_are_not_shared_with_the_flower_context():
    # Arrange
    context = Context(run_id=1, node_id=2, node_config={"a": 1}, run_config={"lr": 0.1})
    flower = context_to_flower(context)

    # Act: a Flower app changes its configs in place
    flower.run_config["lr"] = 1.0
    flower.node_config["a"] = 2
    back = context_from_flower(flower)
    flower.run_config["lr"] = 9.0

    # Assert
    assert context.run_config == {"lr": 0.1} and context.node_config == {"a": 1}
    assert back.run_config == {"lr": 1.0}


def test_flowers_series_id_is_zero_on_the_way_in():
    # Act
    flower = context_to_flower(Context(run_id=1, node_id=2, node_config={}, run_config={}))

    # Assert
    assert flower.series_id == 0


def test_state_corolla_cannot_hold_is_refused_naming_where_it_is():
    # Arrange
    state = flwr_app.RecordDict({"counters": flwr_app.ConfigRecord({"": 1})})
    flower = flwr_app.Context(1, 2, {}, state, {})

    # Act / Assert
    with pytest.raises(RecordError, match=r"context state.*'counters'"):
        context_from_flower(flower)


def test_an_empty_state_converts_to_an_empty_state():
    # Act
    flower = context_to_flower(Context(run_id=1, node_id=2, node_config={}, run_config={}))
    back = context_from_flower(flower)

    # Assert
    assert len(flower.state) == 0 and back.state == RecordDict()
