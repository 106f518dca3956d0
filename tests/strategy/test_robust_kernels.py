from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import AggregationError
from corolla.strategy._casting import to_dtype
from corolla.strategy._robust_kernels import (
    bulyan,
    coordinate_median,
    krum_scores,
    krum_select,
    pairwise_squared_distances,
    trimmed_mean,
    weighted_mean,
)

Model = list[np.ndarray[Any, Any]]

small_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
layer_shapes = st.lists(
    hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4), min_size=1, max_size=3
)


@st.composite
def models(draw: st.DrawFn, min_size: int = 1, max_size: int = 8) -> list[Model]:
    """A list of updates sharing one layout."""
    shapes = draw(layer_shapes)
    n = draw(st.integers(min_size, max_size))
    return [
        [draw(hnp.arrays(np.float64, shape, elements=small_floats)) for shape in shapes]
        for _ in range(n)
    ]


def assert_models_close(a: Model, b: Model, rtol: float = 1e-12, atol: float = 1e-9) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# Identical updates come back


@given(models(max_size=1), st.integers(1, 7))
def test_median_of_identical_updates_is_the_update(one: list[Model], n: int) -> None:
    assert_models_close(coordinate_median(one * n), one[0], rtol=0, atol=0)


@given(models(max_size=1), st.integers(1, 9), st.floats(0.0, 0.49))
def test_trimmed_mean_of_identical_updates_is_the_update(
    one: list[Model], n: int, beta: float
) -> None:
    assert_models_close(trimmed_mean(one * n, beta), one[0], rtol=1e-15, atol=0)


@given(models(max_size=1), st.integers(1, 7), st.lists(st.floats(0.1, 10.0), min_size=7))
def test_weighted_mean_of_identical_updates_is_the_update(
    one: list[Model], n: int, weights: list[float]
) -> None:
    assert_models_close(weighted_mean(one * n, weights[:n]), one[0], rtol=1e-14, atol=1e-300)


@given(models(max_size=1), st.integers(3, 9), st.integers(0, 2))
def test_bulyan_and_krum_of_identical_updates_are_the_update(
    one: list[Model], n: int, f: int
) -> None:
    updates = one * n
    assert krum_select(updates, f)[0] in range(n)
    if n >= 4 * f + 3:
        assert_models_close(bulyan(updates, f), one[0], rtol=1e-15, atol=0)


# Order does not matter


@given(models(min_size=2), st.randoms(use_true_random=False), st.floats(0.0, 0.49))
def test_median_and_trimmed_mean_do_not_depend_on_order(
    updates: list[Model], random: Any, beta: float
) -> None:
    shuffled = list(updates)
    random.shuffle(shuffled)

    assert_models_close(coordinate_median(shuffled), coordinate_median(updates))
    assert_models_close(trimmed_mean(shuffled, beta), trimmed_mean(updates, beta))


@given(models(min_size=2), st.randoms(use_true_random=False), st.integers(0, 3))
def test_krum_scores_follow_the_updates_when_shuffled(
    updates: list[Model], random: Any, f: int
) -> None:
    order = list(range(len(updates)))
    random.shuffle(order)

    scores = krum_scores(pairwise_squared_distances(updates), f)
    shuffled = krum_scores(pairwise_squared_distances([updates[i] for i in order]), f)

    np.testing.assert_allclose(shuffled, scores[order], rtol=1e-12)


# Bounds


@given(models(min_size=1), st.floats(0.0, 0.49))
def test_trimmed_mean_lies_within_min_and_max(updates: list[Model], beta: float) -> None:
    result = trimmed_mean(updates, beta)

    for i, layer in enumerate(result):
        stacked = np.stack([u[i] for u in updates])
        assert np.all(layer >= stacked.min(axis=0) - 1e-9 * np.abs(stacked).max(initial=1))
        assert np.all(layer <= stacked.max(axis=0) + 1e-9 * np.abs(stacked).max(initial=1))


@given(models(min_size=1))
def test_median_lies_within_min_and_max(updates: list[Model]) -> None:
    for i, layer in enumerate(coordinate_median(updates)):
        stacked = np.stack([u[i] for u in updates])
        assert np.all(layer >= stacked.min(axis=0)) and np.all(layer <= stacked.max(axis=0))


def test_trimmed_mean_drops_the_extremes() -> None:
    updates = [[np.array([v])] for v in (0.0, 1.0, 2.0, 3.0, 1000.0)]

    # floor(0.2 * 5) = 1 value cut at each end: mean(1, 2, 3)
    assert trimmed_mean(updates, 0.2)[0].tolist() == [2.0]
    assert trimmed_mean(updates, 0.0)[0].tolist() == [201.2]


def test_median_of_an_even_number_averages_the_middle_two() -> None:
    updates = [[np.array([v])] for v in (4.0, 1.0, 3.0, 2.0)]

    assert coordinate_median(updates)[0].tolist() == [2.5]


# Byzantine robustness


@st.composite
def attacked(draw: st.DrawFn, bulyan_sized: bool = False) -> tuple[list[Model], int, int]:
    """``(updates, f, num_honest)``: honest updates in [-1, 1] first, then ``f`` adversarial
    ones far away (clustered or spread), with ``n >= 2f + 3`` (``4f + 3`` for Bulyan)."""
    f = draw(st.integers(0, 3))
    least = 4 * f + 3 if bulyan_sized else 2 * f + 3
    n = draw(st.integers(least, least + 4))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3))
    honest = [
        [draw(hnp.arrays(np.float64, shape, elements=st.floats(-1.0, 1.0)))] for _ in range(n - f)
    ]
    clustered = draw(st.booleans())
    bad = draw(hnp.arrays(np.float64, shape, elements=st.floats(50.0, 1e6)))
    sign = draw(st.sampled_from([-1.0, 1.0]))
    adversaries = [[sign * (bad if clustered else bad * (k + 1))] for k in range(f)]
    return honest + adversaries, f, n - f


@given(attacked())
def test_krum_picks_an_honest_update(case: tuple[list[Model], int, int]) -> None:
    updates, f, num_honest = case

    [best] = krum_select(updates, f)

    assert best < num_honest


@given(attacked(), st.data())
def test_multi_krum_picks_only_honest_updates(
    case: tuple[list[Model], int, int], data: st.DataObject
) -> None:
    updates, f, num_honest = case
    m = data.draw(st.integers(1, num_honest - 2))

    chosen = krum_select(updates, f, m)

    assert len(chosen) == len(set(chosen)) == m
    assert all(i < num_honest for i in chosen)


@given(attacked(bulyan_sized=True))
def test_bulyan_stays_within_the_honest_updates(case: tuple[list[Model], int, int]) -> None:
    updates, f, num_honest = case

    [result] = bulyan(updates, f)

    honest = np.stack([u[0] for u in updates[:num_honest]])
    assert np.all(result >= honest.min(axis=0) - 1e-12)
    assert np.all(result <= honest.max(axis=0) + 1e-12)


def test_bulyan_needs_4f_plus_3_updates() -> None:
    updates = [[np.array([float(i)])] for i in range(6)]

    with pytest.raises(AggregationError, match="4f"):
        bulyan(updates, 1)
    assert bulyan([*updates, [np.array([6.0])]], 1)[0].shape == (1,)


def test_krum_scores_by_hand() -> None:
    updates = [[np.array([0.0])], [np.array([1.0])], [np.array([3.0])], [np.array([10.0])]]

    distances = pairwise_squared_distances(updates)
    # n - f - 2 = 2 nearest others for f = 0
    scores = krum_scores(distances, 0)

    assert distances[0].tolist() == [0.0, 1.0, 9.0, 100.0]
    assert scores.tolist() == [1 + 9, 1 + 4, 4 + 9, 49 + 81]
    assert krum_select(updates, 0, 2) == [1, 0]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: coordinate_median([]), "no updates"),
        (lambda: trimmed_mean([[np.zeros(1)]], 0.5), "beta"),
        (lambda: krum_select([[np.zeros(1)]], -1), "num_malicious"),
        (lambda: krum_select([[np.zeros(1)]], 0, 2), "select 2 of 1"),
        (lambda: weighted_mean([[np.zeros(1)]], [0.0]), "sum to zero"),
    ],
)
def test_invalid_inputs_are_rejected(call: Any, match: str) -> None:
    with pytest.raises(AggregationError, match=match):
        call()


@given(models(min_size=1))
def test_kernels_do_not_modify_their_arguments(updates: list[Model]) -> None:
    before = [[a.copy() for a in u] for u in updates]

    coordinate_median(updates)
    trimmed_mean(updates, 0.25)
    krum_select(updates, 0)
    weighted_mean(updates, [1.0] * len(updates))

    for u, b in zip(updates, before, strict=True):
        assert_models_close(u, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        ([1.4, 1.6, -2.5], "<i4", [1, 2, -2]),
        ([300.0, -5.0], "|u1", [255, 0]),
        ([0.2, 0.5, 0.9], "|b1", [False, True, True]),
        ([1.5, -0.25], "<f2", [1.5, -0.25]),
    ],
)
def test_results_are_cast_back_to_the_arrays_dtype(
    value: list[float], dtype: str, expected: list[Any]
) -> None:
    out = to_dtype(np.array(value), np.dtype(dtype))

    assert out.dtype == np.dtype(dtype) and out.tolist() == expected
