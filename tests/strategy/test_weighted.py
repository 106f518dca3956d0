from __future__ import annotations

import math
import pickle
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from corolla.core import (
    AggregationError,
    ArrayRecord,
    ConfigError,
    MetricRecord,
    RecordDict,
)
from corolla.strategy import WeightedAverage, array_spec

from .strategies import (
    EXACT_DTYPES,
    F8,
    FLOAT_DTYPES,
    Layout,
    integer_weights,
    layouts,
    positive_total,
    reply,
    updates,
    weights,
)

EPS64 = float(np.finfo(np.float64).eps)
TINY64 = float(np.finfo(np.float64).smallest_subnormal)


@st.composite
def batches(
    draw: st.DrawFn,
    dtypes: list[np.dtype[Any]],
    *,
    integral: bool = False,
    weight: st.SearchStrategy[float] = weights,
    min_size: int = 1,
    positive: bool = True,
) -> tuple[Layout, list[tuple[ArrayRecord, float]]]:
    """A layout and replies with that layout, whose weights sum to more than zero if
    ``positive``."""
    layout = draw(layouts(dtypes))
    n = draw(st.integers(min_size, 6))
    ws = st.lists(weight, min_size=n, max_size=n)
    ws = draw(ws.filter(positive_total) if positive else ws)
    return layout, [(draw(updates(layout, integral=integral)), w) for w in ws]


def fold(
    replies: list[tuple[ArrayRecord, float]], aggregator: WeightedAverage | None = None
) -> WeightedAverage:
    aggregator = aggregator if aggregator is not None else WeightedAverage()
    for node_id, (arrays, w) in enumerate(replies, start=1):
        aggregator.add(reply(arrays, w), node_id)
    return aggregator


def mean_of(aggregator: WeightedAverage) -> ArrayRecord:
    arrays = aggregator.arrays()
    assert arrays is not None
    return arrays


def assert_bit_identical(a: ArrayRecord, b: ArrayRecord) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
        assert a[name].tobytes() == b[name].tobytes(), name


def assert_exactly_equal(a: ArrayRecord, b: ArrayRecord) -> None:
    """Same names, dtypes, shapes and values; the sign of a zero aside (sums start at +0.0,
    so the mean of -0.0 updates is +0.0)."""
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
        assert np.array_equal(a[name], b[name]), name


def rounding_bound(replies: list[tuple[ArrayRecord, float]], name: str) -> np.ndarray:
    """How far two float64 summation orders of the weighted mean may drift apart."""
    total = float(sum(w for _, w in replies))
    spread = sum(float(w) * np.abs(arrays[name].astype(F8)) for arrays, w in replies)
    return 4 * len(replies) * EPS64 * spread / total


def assert_close_up_to_rounding(
    a: ArrayRecord, b: ArrayRecord, replies: list[tuple[ArrayRecord, float]]
) -> None:
    """Equal up to the float64 rounding of the sums, then one step of the result's dtype."""
    assert list(a) == list(b)
    for name in a:
        x, y = a[name], b[name]
        assert x.dtype == y.dtype and x.shape == y.shape
        step = np.spacing(np.maximum(np.abs(x), np.abs(y))).astype(F8)
        gap = np.abs(x.astype(F8) - y.astype(F8))
        assert np.all(gap <= rounding_bound(replies, name) + step), name


def snapshot(aggregator: WeightedAverage) -> tuple[Any, ...]:
    """Everything observable of an aggregator."""
    try:
        arrays: Any = aggregator.arrays()
    except AggregationError as exc:
        arrays = str(exc)
    return (
        aggregator.count,
        aggregator.total_weight,
        None if aggregator.spec is None else list(aggregator.spec),
        arrays,
        aggregator.metrics(),
    )


def one_layer(values: Any, dtype: str = "<f4") -> ArrayRecord:
    return ArrayRecord({"w": np.array(values, dtype=dtype)})


# Averaging identical updates returns the update


@given(batches(EXACT_DTYPES))
def test_averaging_identical_updates_returns_the_update_exactly(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]],
) -> None:
    # Every dtype float64 holds with room to spare comes back exactly, whatever the
    # (finite, positive-total) weights: the float64 mean is within a few float64 steps of
    # the update, and rounding back to the narrower dtype lands on it.
    _, replies = batch
    update = replies[0][0]
    same = [(update, w) for _, w in replies]

    assert_exactly_equal(mean_of(fold(same)), update)


@given(batches([F8, np.dtype("<c16"), np.dtype("<i8")]))
def test_averaging_identical_wide_updates_returns_the_update_to_float64_rounding(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]],
) -> None:
    _, replies = batch
    update = replies[0][0]
    same = [(update, w) for _, w in replies]

    mean = mean_of(fold(same))

    # Relative to the update, except for subnormal values, whose spacing is absolute: each
    # weighted term may round by one subnormal step, and dividing the sum by the total
    # weight scales those steps by its inverse (up to 1000x for weights down to 1e-3).
    atol = 4 * len(same) * TINY64 / sum(float(w) for _, w in same)
    for name in update:
        assert mean[name].dtype == update[name].dtype
        np.testing.assert_allclose(mean[name], update[name], rtol=4 * len(same) * EPS64, atol=atol)


@given(batches(EXACT_DTYPES, integral=True, weight=integer_weights))
def test_the_mean_of_whole_numbers_with_integer_weights_is_the_exact_rounded_mean(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]],
) -> None:
    _, replies = batch
    total = sum(int(w) for _, w in replies)

    mean = mean_of(fold(replies))

    for name in mean:
        exact = [
            Fraction(sum(int(w) * int(arrays[name].real.flat[i]) for arrays, w in replies), total)
            for i in range(mean[name].size)
        ]
        dtype = mean[name].dtype
        if dtype.kind == "b":
            expected = np.array([q >= Fraction(1, 2) for q in exact], dtype)
        elif dtype.kind in "iu":
            expected = np.array([round(q) for q in exact], dtype)  # half to even, as np.rint
        else:
            expected = np.array([float(q) for q in exact], F8).astype(dtype)
        assert mean[name].reshape(-1).tobytes() == expected.tobytes(), name


@given(batches([*FLOAT_DTYPES, np.dtype("<i4"), np.dtype("|u1")]))
def test_the_mean_lies_between_the_smallest_and_largest_update(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]],
) -> None:
    layout, replies = batch
    assume(all(w > 0 for _, w in replies))

    mean = mean_of(fold(replies))

    for name, _, dtype in layout:
        stacked = np.stack([arrays[name] for arrays, _ in replies])
        low, high = stacked.min(axis=0), stacked.max(axis=0)
        if dtype == F8:
            # Rounding may step just outside; narrower dtypes round back inside.
            slack = rounding_bound(replies, name)
            assert np.all(mean[name] >= low - slack) and np.all(mean[name] <= high + slack)
        else:
            assert np.all(low <= mean[name]) and np.all(mean[name] <= high), name


# Order does not matter; merging equals folding


@given(batches(FLOAT_DTYPES, min_size=2), st.randoms(use_true_random=False))
def test_fold_order_does_not_matter_beyond_float64_rounding(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]], random: Any
) -> None:
    _, replies = batch
    shuffled = random.sample(replies, len(replies))

    assert_close_up_to_rounding(mean_of(fold(replies)), mean_of(fold(shuffled)), replies)


@given(batches(FLOAT_DTYPES, min_size=2), st.data())
def test_merge_equals_folding_one_then_the_other(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]], data: st.DataObject
) -> None:
    _, replies = batch
    cut = data.draw(st.integers(0, len(replies)))
    first, second = fold(replies[:cut]), fold(replies[cut:])

    first.merge(second)
    folded = fold(replies)

    assert first.count == folded.count == len(replies)
    assert first.total_weight == pytest.approx(folded.total_weight, rel=1e-15)
    assert first.spec == folded.spec
    assert_close_up_to_rounding(mean_of(first), mean_of(folded), replies)


@given(batches(FLOAT_DTYPES, min_size=3), st.data())
def test_merging_is_associative(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]], data: st.DataObject
) -> None:
    _, replies = batch
    i = data.draw(st.integers(0, len(replies)))
    j = data.draw(st.integers(i, len(replies)))
    a, b, c = (fold(part) for part in (replies[:i], replies[i:j], replies[j:]))
    a2, b2, c2 = (fold(part) for part in (replies[:i], replies[i:j], replies[j:]))

    a.merge(b)
    a.merge(c)  # (a + b) + c
    b2.merge(c2)
    a2.merge(b2)  # a + (b + c)

    assert a.count == a2.count
    assert_close_up_to_rounding(mean_of(a), mean_of(a2), replies)


def test_merging_different_layouts_is_an_error_and_changes_nothing() -> None:
    aggregator = fold([(one_layer([1.0]), 2)])
    other = fold([(one_layer([1.0, 2.0]), 2)])
    before = snapshot(aggregator)

    with pytest.raises(AggregationError, match="different array layouts"):
        aggregator.merge(other)
    assert snapshot(aggregator) == before


# Metrics


@given(
    st.lists(
        st.tuples(
            weights,
            st.dictionaries(
                st.sampled_from(["loss", "acc", "n"]),
                st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6)),
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_metrics_are_weighted_means_over_the_replies_that_report_them(
    replies: list[tuple[float, dict[str, float]]],
) -> None:
    aggregator = WeightedAverage(arrays_key=None)
    for node_id, (w, values) in enumerate(replies, start=1):
        aggregator.add(reply(None, w, **values), node_id)

    metrics = aggregator.metrics()

    total = sum(Fraction(w) for w, _ in replies)
    assert metrics["num-examples"] == pytest.approx(float(total), rel=1e-12)
    for name in ("loss", "acc", "n"):
        reporting = [(Fraction(w), Fraction(v[name])) for w, v in replies if name in v]
        weight = sum(w for w, _ in reporting)
        if weight == 0:
            assert name not in metrics
        else:
            expected = sum(w * v for w, v in reporting) / weight
            assert metrics[name] == pytest.approx(float(expected), rel=1e-9, abs=1e-9)


def test_metrics_example() -> None:
    aggregator = WeightedAverage(arrays_key=None)
    aggregator.add(reply(None, 1, loss=1.0, acc=0.5, per_class=[1.0, 2.0]), 1)
    aggregator.add(reply(None, 3, loss=3.0), 2)

    assert aggregator.metrics() == MetricRecord({"loss": 2.5, "acc": 0.5, "num-examples": 4})


def test_the_total_weight_is_a_float_when_weights_are_fractional() -> None:
    aggregator = WeightedAverage(arrays_key=None)
    aggregator.add(reply(None, 1.5), 1)

    assert aggregator.metrics() == MetricRecord({"num-examples": 1.5})


def test_custom_record_names() -> None:
    aggregator = WeightedAverage(arrays_key="params", metrics_key="stats", weight_key="n")
    content = RecordDict({"params": one_layer([2.0]), "stats": MetricRecord({"n": 2, "loss": 1.0})})

    aggregator.add(content, 1)

    assert mean_of(aggregator) == one_layer([2.0])
    assert aggregator.metrics() == MetricRecord({"loss": 1.0, "n": 2})


# Empty results and weights summing to zero


def test_nothing_folded_gives_no_arrays() -> None:
    aggregator = WeightedAverage()

    assert aggregator.arrays() is None
    assert aggregator.count == 0
    assert aggregator.metrics() == MetricRecord({"num-examples": 0})


def test_without_arrays_key_arrays_are_ignored() -> None:
    aggregator = WeightedAverage(arrays_key=None)

    aggregator.add(reply(one_layer([np.nan]), 1, loss=0.5), 1)

    assert aggregator.arrays() is None
    assert aggregator.metrics()["loss"] == 0.5


@given(batches(EXACT_DTYPES, weight=st.just(0), positive=False))
def test_weights_summing_to_zero_cannot_be_averaged(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]],
) -> None:
    _, replies = batch
    aggregator = WeightedAverage()
    for node_id, (arrays, _) in enumerate(replies, start=1):
        aggregator.add(reply(arrays, 0), node_id)

    assert aggregator.count == len(replies)
    with pytest.raises(AggregationError, match="sum to zero"):
        aggregator.arrays()
    assert aggregator.metrics()["num-examples"] == 0


# Rejected replies leave the aggregator unchanged


@given(batches([*FLOAT_DTYPES, np.dtype("<c8")]), st.data())
def test_any_non_finite_element_is_rejected(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]], data: st.DataObject
) -> None:
    layout, replies = batch
    sized = [name for name, shape, _ in layout if math.prod(shape) > 0]
    assume(sized)
    name = data.draw(st.sampled_from(sized))
    bad = replies[0][0][name].copy()
    index = data.draw(st.integers(0, bad.size - 1))
    bad.reshape(-1)[index] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    aggregator = fold(replies[1:], WeightedAverage(spec=array_spec(replies[0][0])))
    before = snapshot(aggregator)
    sums_before = [s.copy() for s in aggregator._sums or []]

    with pytest.raises(AggregationError, match="NaN or infinity"):
        aggregator.add(reply(replies[0][0] | {name: bad}, 1), 99)

    # Arrays of the reply folded before the bad one are subtracted again: the sums come
    # back up to the rounding of one addition and one subtraction.
    assert snapshot(aggregator)[:3] == before[:3]
    assert snapshot(aggregator)[4] == before[4]
    for acc, acc_before, x in zip(aggregator._sums or [], sums_before, replies[0][0].values()):
        x64 = np.abs(x.reshape(-1).astype(acc.dtype))
        bound = 2 * EPS64 * (np.abs(acc_before) + x64)
        with np.errstate(invalid="ignore"):
            assert np.all((np.abs(acc - acc_before) <= bound) | (acc == acc_before))


def test_without_spec_the_first_reply_sets_the_layout() -> None:
    aggregator = WeightedAverage()
    aggregator.add(reply(one_layer([1.0, 2.0]), 1), 1)

    with pytest.raises(AggregationError, match="shape"):
        aggregator.add(reply(one_layer([1.0]), 1), 2)
    assert aggregator.spec == [("w", (2,), "<f4")]


# Extreme but finite inputs


@pytest.mark.xfail(
    strict=True,
    reason="sums are float64: int64/uint64 values beyond 2**53 lose precision, and the "
    "clip in cast_mean lets 2**63 through, so int64 max wraps to int64 min and uint64 max to 0",
)
@pytest.mark.parametrize(
    ("dtype", "value"),
    [("<i8", 2**63 - 1), ("<i8", 2**53 + 1), ("<u8", 2**64 - 1), ("<i8", -(2**63) + 1)],
)
def test_averaging_identical_64_bit_integers_returns_them(dtype: str, value: int) -> None:
    update = ArrayRecord({"ids": np.array([value], dtype)})

    with np.errstate(all="ignore"):
        mean = mean_of(fold([(update, 1), (update, 2)]))

    assert mean == update


@pytest.mark.xfail(
    strict=True,
    reason="the weighted sum of large finite float64 updates overflows the float64 "
    "accumulator, so the mean of finite updates comes out infinite",
)
def test_averaging_huge_finite_float64_updates_stays_finite() -> None:
    update = ArrayRecord({"w": np.array([1.5e308, -1.7e308])})

    with np.errstate(all="ignore"):
        mean = mean_of(fold([(update, 1), (update, 1)]))

    assert mean == update


@pytest.mark.xfail(
    strict=True,
    reason="a finite but huge weight overflows weight * update in float64, so a single "
    "reply can make the global arrays infinite although it passed validation",
)
def test_a_huge_finite_weight_cannot_make_the_mean_infinite() -> None:
    update = ArrayRecord({"w": np.array([2.0, -3.0])})

    with np.errstate(all="ignore"):
        mean = mean_of(fold([(update, 1e308)]))

    assert mean == update


# Copies: empty() and pickling


def test_empty_gives_a_fresh_aggregator_with_the_same_settings() -> None:
    aggregator = WeightedAverage(
        arrays_key="params", metrics_key="stats", weight_key="n", spec=[("w", (1,), "<f4")]
    )
    aggregator.add(
        RecordDict({"params": one_layer([1.0]), "stats": MetricRecord({"n": 1, "l": 2.0})}), 1
    )

    fresh = aggregator.empty()

    assert isinstance(fresh, WeightedAverage) and fresh is not aggregator
    assert (fresh.arrays_key, fresh.metrics_key, fresh.weight_key) == ("params", "stats", "n")
    assert fresh.spec == aggregator.spec
    assert (fresh.count, fresh.total_weight, fresh.arrays()) == (0, 0.0, None)
    assert fresh.metrics() == MetricRecord({"n": 0})


def test_empty_copies_are_independent_of_each_other_and_the_original() -> None:
    aggregator = WeightedAverage(spec=[("w", (1,), "<f4")])
    a, b = aggregator.empty(), aggregator.empty()

    a.add(reply(one_layer([4.0]), 1), 1)

    assert (aggregator.count, b.count) == (0, 0)
    with pytest.raises(AggregationError):
        b.add(reply(one_layer([4.0, 5.0]), 1), 1)  # the layout is still enforced


def test_the_layout_learned_from_a_reply_carries_over_to_empty_copies() -> None:
    aggregator = fold([(one_layer([1.0, 2.0]), 1)])

    with pytest.raises(AggregationError):
        aggregator.empty().add(reply(one_layer([1.0]), 1), 2)


@given(batches(EXACT_DTYPES + FLOAT_DTYPES), st.data())
def test_a_pickled_partial_aggregate_continues_like_the_original(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]], data: st.DataObject
) -> None:
    # Workers receive pickled copies and send pickled partial aggregates back.
    _, replies = batch
    cut = data.draw(st.integers(0, len(replies)))
    original = fold(replies[:cut])

    copy = pickle.loads(pickle.dumps(original))
    fold(replies[cut:], copy)
    fold(replies[cut:], original)

    assert snapshot(copy) == snapshot(original)


def test_a_worker_copy_merges_back_into_the_root() -> None:
    root = WeightedAverage(spec=[("w", (2,), "<f4")])
    worker = pickle.loads(pickle.dumps(root.empty()))
    worker.add(reply(one_layer([1.0, 3.0]), 1), 1)
    worker.add(reply(one_layer([3.0, 5.0]), 3), 2)

    root.merge(pickle.loads(pickle.dumps(worker)))

    assert mean_of(root) == one_layer([2.5, 4.5])
    assert root.count == 2 and root.total_weight == 4


def test_a_workspace_is_reused_and_gives_the_same_bits() -> None:
    rng = np.random.default_rng(3)
    replies = [
        RecordDict(
            {
                "arrays": ArrayRecord({"w": rng.standard_normal(50, dtype=np.float32)}),
                "metrics": MetricRecord({"num-examples": int(rng.integers(1, 9))}),
            }
        )
        for _ in range(4)
    ]
    first = WeightedAverage()
    for i, content in enumerate(replies):
        first.add(content, i + 1)
    expected = first.arrays()
    workspace = first.take_workspace()
    assert first.arrays() is None

    second = WeightedAverage(workspace=workspace)
    for i, content in enumerate(replies):
        second.add(content, i + 1)
    merged = WeightedAverage(workspace=second.take_workspace())
    for i, content in enumerate(replies):
        partial = merged.empty()
        partial.add(content, i + 1)
        merged.merge(partial)

    assert second.count == 4
    assert merged.arrays() == expected
    assert merged.take_workspace()[0] is workspace[0]  # type: ignore[index]


# Accumulator precision


def test_native_precision_sums_in_float32_and_agrees_with_float64() -> None:
    rng = np.random.default_rng(5)
    replies = [
        (ArrayRecord({"w": rng.standard_normal((50, 20)).astype(np.float32)}), int(n))
        for n in rng.integers(1, 100, 30)
    ]
    native = fold(replies, WeightedAverage(precision="native"))
    wide = fold(replies, WeightedAverage())

    assert native._sums is not None and native._sums[0].dtype == np.float32
    np.testing.assert_allclose(mean_of(native)["w"], mean_of(wide)["w"], rtol=1e-5, atol=1e-6)
    assert mean_of(native)["w"].dtype == np.float32


def test_an_unknown_precision_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="precision"):
        WeightedAverage(precision="half")


# A workspace given in advance


@given(batches(FLOAT_DTYPES))
def test_a_workspace_given_in_advance_gets_the_sums_with_the_same_bits(
    batch: tuple[Layout, list[tuple[ArrayRecord, float]]],
) -> None:
    # Arrange: an aggregator that knows its layout before any reply, as FedAvg's does.
    _, replies = batch
    spec = array_spec(replies[0][0])
    given_one = WeightedAverage(spec=spec)
    layout = given_one.workspace_layout()
    assert layout is not None
    workspace = [np.full(size, np.nan, dtype=dtype) for size, dtype in layout]
    given_one.use_workspace(workspace)

    # Act
    fold(replies, given_one)
    plain = fold(replies, WeightedAverage(spec=spec))

    # Assert
    assert_bit_identical(mean_of(given_one), mean_of(plain))
    sums = given_one.take_workspace()
    assert sums is not None and all(s is w for s, w in zip(sums, workspace, strict=True))


def test_the_layout_is_unknown_without_a_spec_or_arrays_and_once_sums_exist() -> None:
    spec = array_spec(one_layer([1.0, 2.0, 3.0]))
    started = fold([(one_layer([1.0, 2.0, 3.0]), 1)], WeightedAverage(spec=spec))

    assert WeightedAverage().workspace_layout() is None
    assert WeightedAverage(arrays_key=None, spec=spec).workspace_layout() is None
    assert started.workspace_layout() is None
    assert WeightedAverage(spec=spec).workspace_layout() == [(3, np.dtype(np.float64))]
    native = WeightedAverage(spec=spec, precision="native")
    assert native.workspace_layout() == [(3, np.dtype(np.float32))]
