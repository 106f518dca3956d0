"""Process backend internals: the shared memory a worker folds replies into."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pytest

from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.execution import Call, Task, execute_task
from corolla.execution._shm import SegmentCache, SegmentPool, pack
from corolla.execution._worker import shared_workspace
from corolla.strategy import WeightedAverage, array_spec


@pytest.fixture
def pool() -> Any:
    pool = SegmentPool()
    yield pool
    pool.close()


def _reply(w: np.ndarray, weight: int) -> RecordDict:
    return RecordDict(
        {"arrays": ArrayRecord({"w": w}), "metrics": MetricRecord({"num-examples": weight})}
    )


def test_a_fedavg_partial_is_folded_in_shared_memory_and_packed_where_it_lies(pool) -> None:
    # Arrange
    model = ArrayRecord({"w": np.zeros(50_000, dtype=np.float32)})
    aggregator = WeightedAverage(spec=array_spec(model))
    segment = shared_workspace(aggregator, pool)
    assert segment is not None

    # Act
    aggregator.add(_reply(np.full(50_000, 2.0, dtype=np.float32), 1), 1)
    aggregator.add(_reply(np.full(50_000, 5.0, dtype=np.float32), 2), 2)
    payload, used = pack(aggregator, pool, within=segment)

    # Assert: the root merges the partial straight from the worker's segment.
    cache = SegmentCache()
    try:
        partial = cache.load(payload)
        root = WeightedAverage()
        root.merge(partial)
        del partial
        mean = root.arrays()
        assert used is segment
        assert mean is not None and np.all(mean["w"] == np.float32(4.0))
    finally:
        cache.close()
    del aggregator


def test_no_workspace_for_small_layouts_or_aggregators_without_one(pool) -> None:
    small = WeightedAverage(spec=array_spec(ArrayRecord({"w": np.zeros(10, np.float32)})))

    assert shared_workspace(small, pool) is None
    assert shared_workspace(WeightedAverage(), pool) is None  # layout unknown
    assert shared_workspace(object(), pool) is None
    assert shared_workspace(None, pool) is None


def test_a_folded_reply_is_let_go_before_the_next_call() -> None:
    # Arrange: a ClientApp that notes whether the update it returned last time still lives.
    previous: list[weakref.ref[np.ndarray]] = []
    alive_at_next_call: list[bool] = []

    def client_app(message: Message, context: Context) -> Message:
        if previous:
            alive_at_next_call.append(previous[-1]() is not None)
        update = np.ones(10, dtype=np.float32)
        previous.append(weakref.ref(update))
        content = RecordDict(
            {"arrays": ArrayRecord({"w": update}), "metrics": MetricRecord({"num-examples": 1})}
        )
        return Message(content, reply_to=message)

    spec = array_spec(ArrayRecord({"w": np.zeros(10, np.float32)}))
    calls = [
        Call(Message(RecordDict(), dst_node_id=n, message_type="train"), n, {}, RecordDict())
        for n in (1, 2, 3)
    ]

    # Act
    result = execute_task(client_app, Task(0, calls, WeightedAverage(spec=spec)), 1, {})

    # Assert
    assert result.aggregator is not None and result.aggregator.count == 3
    assert alive_at_next_call == [False, False]
