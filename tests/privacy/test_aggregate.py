"""ClippedSum, the aggregator of central DP, against the aggregator contract."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corolla.core import AggregationError, ArrayRecord, ConfigError, MetricRecord, RecordDict
from corolla.privacy import UNCLIPPED_KEY, ClippedSum, l2_norm

from ..strategy.strategies import FLOAT_DTYPES, NodeReply, federated_rounds

ROUNDS = federated_rounds([*FLOAT_DTYPES, np.dtype("<i4")])


def fold(aggregator: ClippedSum, replies: list[NodeReply]) -> ClippedSum:
    for node_id, content in replies:
        aggregator.add(content, node_id)
    return aggregator


def assert_same(a: ClippedSum, b: ClippedSum) -> None:
    assert (a.count, a.unclipped) == (b.count, b.unclipped)
    for x, y in zip(a.sums(), b.sums(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
    assert a.metrics() == b.metrics()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), clipping_norm=st.sampled_from([0.5, 3.0, 1e6]))
def test_merging_partial_sums_equals_folding_every_reply(
    data: st.DataObject, clipping_norm: float
) -> None:
    global_arrays, replies = data.draw(ROUNDS)
    split = data.draw(st.integers(0, len(replies)))
    whole = fold(ClippedSum(global_arrays, clipping_norm), replies)
    first = fold(ClippedSum(global_arrays, clipping_norm), replies[:split])
    second = fold(pickle.loads(pickle.dumps(first.empty())), replies[split:])

    first.merge(second)

    assert_same(first, whole)
    assert_same(fold(ClippedSum(global_arrays, clipping_norm), replies[::-1]), whole)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), clipping_norm=st.floats(0.01, 100.0))
def test_the_sum_is_within_c_times_the_replies_and_counts_the_unclipped(
    data: st.DataObject, clipping_norm: float
) -> None:
    global_arrays, replies = data.draw(ROUNDS)

    aggregator = fold(ClippedSum(global_arrays, clipping_norm), replies)

    assert l2_norm(aggregator.sums()) <= clipping_norm * len(replies) * (1 + 1e-12)
    norms = [
        l2_norm(
            [
                np.asarray(c["arrays"][n], np.float64) - np.asarray(a, np.float64)
                for n, a in global_arrays.items()
            ]
        )
        for _, c in replies
    ]
    assert aggregator.unclipped == sum(norm <= clipping_norm for norm in norms)


def test_a_refused_reply_leaves_the_sum_unchanged() -> None:
    start = ArrayRecord({"w": np.zeros(3)})
    good = RecordDict(
        {"arrays": ArrayRecord({"w": np.ones(3)}), "metrics": MetricRecord({"num-examples": 1})}
    )
    aggregator = fold(ClippedSum(start, 10.0), [(1, good)])
    before = [s.copy() for s in aggregator.sums()]
    bad = {
        "NaN or infinity": good | {"arrays": ArrayRecord({"w": np.array([1.0, np.nan, 0.0])})},
        "shape": good | {"arrays": ArrayRecord({"w": np.ones(4)})},
        "num-examples": good | {"metrics": MetricRecord({"loss": 1.0})},
        "must be 0 or 1": good | {"metrics": MetricRecord({"num-examples": 1, UNCLIPPED_KEY: 2})},
    }

    for match, content in bad.items():
        with pytest.raises(AggregationError, match=match):
            aggregator.add(RecordDict(content), 2)

    assert aggregator.count == 1
    np.testing.assert_array_equal(aggregator.sums()[0], before[0])


def test_the_bit_a_node_reports_is_counted_and_kept_out_of_the_metrics() -> None:
    start = ArrayRecord({"w": np.zeros(4)})
    replies = [
        (
            n,
            RecordDict(
                {
                    "arrays": ArrayRecord({"w": np.full(4, 0.1)}),
                    "metrics": MetricRecord({"num-examples": 2, "loss": 1.0, UNCLIPPED_KEY: bit}),
                }
            ),
        )
        for n, bit in [(1, 1), (2, 0), (3, 1)]
    ]

    aggregator = fold(ClippedSum(start, 1.0, clipping="client"), replies)

    assert aggregator.unclipped == 2
    assert UNCLIPPED_KEY not in aggregator.metrics()
    assert aggregator.metrics()["loss"] == 1.0


def test_complex_arrays_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"\['z'\] are complex"):
        ClippedSum(ArrayRecord({"z": np.zeros(2, np.complex64)}), 1.0)
    assert math.isfinite(ClippedSum(ArrayRecord({"w": np.zeros(2)}), 1.0).clipping_norm)


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_a_partial_sum_folded_in_a_workspace_and_shipped_back_merges_to_the_same_total(
    data: st.DataObject,
) -> None:
    # Arrange: a worker's partial sum, folded into the workspace it was given
    global_arrays, replies = data.draw(ROUNDS)
    whole = fold(ClippedSum(global_arrays, 3.0), replies)
    partial = pickle.loads(pickle.dumps(ClippedSum(global_arrays, 3.0).empty()))
    layout = partial.workspace_layout()
    assert layout is not None
    workspace = [np.full(size, np.nan, dtype=dtype) for size, dtype in layout]
    partial.use_workspace(workspace)
    fold(partial, replies)

    # Act: it travels back, without the global arrays, and is merged at the root
    shipped = pickle.loads(pickle.dumps(partial))
    root = ClippedSum(global_arrays, 3.0)
    root.merge(shipped)

    # Assert
    assert_same(root, whole)
    if replies:
        assert shipped.global_arrays is None
        sums = zip(partial.sums(), workspace, strict=True)
        assert all(s.size == 0 or np.shares_memory(s, w) for s, w in sums)
        with pytest.raises(AggregationError, match="merged, not folded into"):
            shipped.add(replies[0][1], replies[0][0])


@pytest.mark.parametrize("clipping", ["server", "client"])
def test_a_refused_first_reply_leaves_the_sum_empty_and_the_workspace_in_use(clipping) -> None:
    # Arrange: an aggregator a simulation worker gave its shared workspace
    start = ArrayRecord({"w": np.zeros(3, np.float32)})
    aggregator = ClippedSum(start, 1.0, clipping=clipping)
    layout = aggregator.workspace_layout()
    assert layout is not None
    workspace = [np.full(size, 7.0, dtype) for size, dtype in layout]
    aggregator.use_workspace(workspace)
    metrics = MetricRecord({"num-examples": 1})
    refused = np.array([0.0, np.nan, 0.0]) if clipping == "server" else np.full(3, 5.0)
    good = np.array([0.3, 0.0, -0.4], np.float32)

    # Act: a refused reply (NaN; longer than C under client-side clipping), then a good one
    with pytest.raises(AggregationError):
        aggregator.add(
            RecordDict(
                {"arrays": ArrayRecord({"w": refused.astype(np.float32)}), "metrics": metrics}
            ),
            1,
        )
    emptied = (aggregator.count, [s.copy() for s in aggregator.sums()])
    aggregator.add(RecordDict({"arrays": ArrayRecord({"w": good}), "metrics": metrics}), 2)

    # Assert: nothing of the refused reply is kept, and the good one is summed into the
    # workspace
    assert emptied[0] == 0
    np.testing.assert_array_equal(emptied[1][0], np.zeros(3))
    assert aggregator.count == 1
    np.testing.assert_array_equal(aggregator.sums()[0], good.astype(np.float64))
    assert np.shares_memory(aggregator.sums()[0], workspace[0])
