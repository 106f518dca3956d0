from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import ArrayRecord, ConfigError, MetricRecord, RecordDict
from corolla.strategy import AllUpdates, Bulyan, FedMedian, FedTrimmedAvg, Krum, MultiKrum

from .rounds import train_round

ROBUST = [FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan]


def reply(arrays: ArrayRecord, weight: float = 1, **metrics: Any) -> RecordDict:
    return RecordDict(
        {"arrays": arrays, "metrics": MetricRecord({"num-examples": weight, **metrics})}
    )


def snapshot(aggregator: AllUpdates) -> tuple[Any, ...]:
    return (
        [(n, dict(a), w) for n, a, w in aggregator.updates()],
        aggregator.metrics(),
        aggregator.count,
    )


def same_snapshot(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    (ua, ma, ca), (ub, mb, cb) = a, b
    return (
        ca == cb
        and ma == mb
        and len(ua) == len(ub)
        and all(
            na == nb and wa == wb and all(np.array_equal(aa[k], ab[k]) for k in aa)
            for (na, aa, wa), (nb, ab, wb) in zip(ua, ub, strict=True)
        )
    )


batches = st.lists(
    st.tuples(
        hnp.arrays(np.float32, (2,), elements=st.floats(-10, 10, width=32)),
        st.integers(0, 50),
    ),
    max_size=6,
)


def fold(items: list[tuple[np.ndarray, int]], start: int = 1) -> AllUpdates:
    aggregator = AllUpdates()
    for node_id, (w, weight) in enumerate(items, start=start):
        aggregator.add(reply(ArrayRecord({"w": w}), weight, loss=float(weight)), node_id)
    return aggregator


@given(batches, st.randoms(use_true_random=False))
def test_updates_come_out_in_node_order_whatever_the_arrival(
    items: list[tuple[np.ndarray, int]], random: Any
) -> None:
    order = list(enumerate(items, start=1))
    random.shuffle(order)
    shuffled = AllUpdates()
    for node_id, (w, weight) in order:
        shuffled.add(reply(ArrayRecord({"w": w}), weight, loss=float(weight)), node_id)

    assert [n for n, _, _ in shuffled.updates()] == list(range(1, len(items) + 1))
    assert same_snapshot(snapshot(shuffled), snapshot(fold(items)))


# Strategies

INITIAL = ArrayRecord({"w": np.zeros((2, 2), np.float32), "n": np.array([0], np.int32)})


def honest_and_byzantine(num_honest: int, num_bad: int) -> list[tuple[int, RecordDict]]:
    rng = np.random.default_rng(0)
    out = []
    for node in range(1, num_honest + num_bad + 1):
        scale = 1.0 if node <= num_honest else 1e4
        w = (rng.uniform(-1, 1, (2, 2)) * scale).astype(np.float32)
        out.append((node, reply(ArrayRecord({"w": w, "n": np.array([node], np.int32)}), node)))
    return out


@pytest.mark.parametrize(
    "strategy",
    [
        FedMedian(),
        FedTrimmedAvg(beta=0.2),
        Krum(num_malicious_nodes=2),
        MultiKrum(num_malicious_nodes=2, num_nodes_to_select=3),
        Bulyan(num_malicious_nodes=2),
    ],
    ids=lambda s: type(s).__name__,
)
def test_two_byzantine_nodes_of_eleven_do_not_move_the_arrays_far(strategy: Any) -> None:
    arrays, metrics, _ = train_round(strategy, 1, INITIAL, honest_and_byzantine(9, 2))

    assert arrays["w"].dtype == np.float32 and arrays["n"].dtype == np.int32
    assert np.all(np.abs(arrays["w"]) <= 1.0)
    assert metrics["num-examples"] == sum(range(1, 12))


def model(value: float) -> ArrayRecord:
    return ArrayRecord({"w": np.full((2, 2), value, np.float32), "n": np.array([0], np.int32)})


def test_the_median_strategy_takes_the_coordinate_median() -> None:
    replies = [(1, reply(model(1))), (2, reply(model(5))), (3, reply(model(2)))]

    arrays, _, _ = train_round(FedMedian(), 1, INITIAL, replies)

    assert arrays["w"].tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_multi_krum_weighs_the_selected_updates_by_num_examples() -> None:
    replies = [(1, reply(model(0), 1)), (2, reply(model(1), 3)), (3, reply(model(100), 1))]

    arrays, _, _ = train_round(MultiKrum(num_nodes_to_select=2), 1, INITIAL, replies)

    assert arrays["w"].tolist() == [[0.75, 0.75], [0.75, 0.75]]


def test_bulyan_with_too_few_replies_keeps_the_arrays() -> None:
    arrays, _, _ = train_round(
        Bulyan(num_malicious_nodes=1), 1, INITIAL, honest_and_byzantine(6, 0)
    )

    assert arrays == INITIAL


@pytest.mark.parametrize("cls", ROBUST)
def test_no_replies_keep_the_arrays(cls: type) -> None:
    arrays, metrics, _ = train_round(cls(), 1, INITIAL, [])

    assert arrays == INITIAL and metrics == MetricRecord()


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (FedTrimmedAvg, {"beta": 0.5}),
        (FedTrimmedAvg, {"beta": -0.1}),
        (Krum, {"num_malicious_nodes": -1}),
        (MultiKrum, {"num_nodes_to_select": 0}),
        (Bulyan, {"num_malicious_nodes": -1}),
        (FedMedian, {"fraction_train": 2.0}),
    ],
)
def test_invalid_options_are_rejected(cls: type, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        cls(**options)
