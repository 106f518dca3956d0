from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import ArrayRecord, ConfigError, MetricRecord, RecordDict
from corolla.strategy import FedAvg, QFedAvg, QFedAvgAggregator
from corolla.strategy._qfedavg import qfedavg_terms

from .rounds import run_rounds, train_round

GLOBAL = ArrayRecord({"w": np.array([1.0, -2.0, 0.5]), "b": np.array([0.0])})


def reply(arrays: ArrayRecord, loss: float, weight: int = 1) -> RecordDict:
    return RecordDict(
        {
            "arrays": arrays,
            "metrics": MetricRecord({"num-examples": weight, "train_loss": loss}),
        }
    )


local_models = st.lists(
    st.tuples(
        hnp.arrays(np.float64, (4,), elements=st.floats(-5, 5)),
        st.floats(0.0, 10.0),
    ),
    min_size=1,
    max_size=6,
)


def fold(
    items: list[tuple[np.ndarray, float]], q: float = 0.5, start: int = 1
) -> QFedAvgAggregator:
    global_arrays = ArrayRecord({"w": np.linspace(-1, 1, 4)})
    aggregator = QFedAvgAggregator(global_arrays, q=q, lipschitz=10.0)
    for node_id, (w, loss) in enumerate(items, start=start):
        aggregator.add(reply(ArrayRecord({"w": w}), loss), node_id)
    return aggregator


@given(local_models, local_models)
def test_merge_equals_folding_one_after_the_other(
    first: list[tuple[np.ndarray, float]], second: list[tuple[np.ndarray, float]]
) -> None:
    folded = fold(first + second)
    merged = fold(first)
    merged.merge(pickle.loads(pickle.dumps(fold(second, start=len(first) + 1))))

    a, b = folded.arrays(), merged.arrays()
    assert a is not None and b is not None
    np.testing.assert_allclose(a["w"], b["w"], rtol=1e-12, atol=1e-12)
    assert merged.count == folded.count


@given(local_models, st.randoms(use_true_random=False))
def test_order_does_not_matter(items: list[tuple[np.ndarray, float]], random: Any) -> None:
    shuffled = list(items)
    random.shuffle(shuffled)

    a, b = fold(items).arrays(), fold(shuffled).arrays()

    assert a is not None and b is not None
    np.testing.assert_allclose(a["w"], b["w"], rtol=1e-12, atol=1e-12)


@given(local_models)
def test_with_q_zero_it_is_the_unweighted_average(items: list[tuple[np.ndarray, float]]) -> None:
    result = fold(items, q=0.0).arrays()

    assert result is not None
    mean = np.mean([w for w, _ in items], axis=0)
    np.testing.assert_allclose(result["w"], mean, rtol=1e-9, atol=1e-9)


@given(hnp.arrays(np.float64, (4,), elements=st.floats(-5, 5)), st.integers(1, 5), st.floats(0, 5))
def test_identical_updates_return_the_update_when_q_is_zero(
    w: np.ndarray, n: int, loss: float
) -> None:
    result = fold([(w, loss)] * n, q=0.0).arrays()

    assert result is not None
    np.testing.assert_allclose(result["w"], w, rtol=1e-9, atol=1e-9)


def test_terms_by_hand() -> None:
    delta, h = qfedavg_terms([np.array([1.0])], [np.array([0.5])], loss=4.0, q=1.0, lipschitz=2.0)

    # g = 2 * (1 - 0.5) = 1; delta = F^q g = 4; h = q F^(q-1) |g|^2 + L F^q = 1 + 8
    assert delta[0][0] == pytest.approx(4.0)
    assert h == pytest.approx(9.0)


def test_terms_of_scalar_arrays_are_arrays() -> None:
    delta, _ = qfedavg_terms([np.array(1.0)], [np.array(0.5)], loss=1.0, q=0.5, lipschitz=2.0)

    assert isinstance(delta[0], np.ndarray) and delta[0].shape == ()


def test_the_strategy_with_q_zero_matches_unweighted_fedavg() -> None:
    rng = np.random.default_rng(0)
    rounds = [
        [
            (n, reply(ArrayRecord({"w": rng.normal(size=3), "b": rng.normal(size=1)}), 1.0, 1))
            for n in (1, 2, 3)
        ]
        for _ in range(3)
    ]

    got = run_rounds(QFedAvg(client_learning_rate=0.1, q=0.0), GLOBAL, rounds)
    expected = run_rounds(FedAvg(), GLOBAL, rounds)

    for a, b in zip(got, expected, strict=True):
        for name in GLOBAL:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-9, atol=1e-12)


def test_metrics_are_averaged_and_no_replies_keep_the_arrays() -> None:
    strategy = QFedAvg(client_learning_rate=0.1)

    _, metrics, _ = train_round(
        strategy, 1, GLOBAL, [(1, reply(GLOBAL, 1.0, 1)), (2, reply(GLOBAL, 3.0, 3))]
    )
    arrays, empty, _ = train_round(strategy, 2, GLOBAL, [])

    assert metrics["train_loss"] == pytest.approx(2.5) and metrics["num-examples"] == 4
    assert arrays == GLOBAL and empty == MetricRecord()


@pytest.mark.parametrize(
    "options", [{"client_learning_rate": 0.0}, {"client_learning_rate": 0.1, "q": -1.0}]
)
def test_invalid_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        QFedAvg(**options)
