"""The kernels of differential privacy: norms, clipping, noise and adaptive clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import ConfigError
from corolla.privacy import (
    adaptive_clipping_norm,
    add_gaussian_noise,
    clip_update,
    l2_norm,
    noise_share_stddev,
    update_noise_multiplier,
)

# Finite float64 values from the tiniest subnormal to the largest, of both signs, and zero.
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
UPDATES = st.lists(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5), elements=FINITE),
    min_size=1,
    max_size=4,
)
NORMS = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False)


def reference_norm(arrays: list[np.ndarray]) -> float:
    """The norm by Python's math.hypot (scaled, correctly rounded to about one ulp)."""
    return math.hypot(*(float(x) for a in arrays for x in a.reshape(-1)))


@settings(max_examples=200, deadline=None)
@given(update=UPDATES, clipping_norm=NORMS)
def test_a_clipped_update_s_norm_is_at_most_c_for_every_input(
    update: list[np.ndarray], clipping_norm: float
) -> None:
    clipped, norm, within = clip_update(update, clipping_norm)

    assert l2_norm(clipped) <= clipping_norm
    assert all(isinstance(c, np.ndarray) and c.dtype == np.float64 for c in clipped)
    assert [c.shape for c in clipped] == [a.shape for a in update]
    assert within == (norm <= clipping_norm)


@settings(max_examples=100, deadline=None)
@given(update=UPDATES, clipping_norm=NORMS)
def test_clipping_leaves_an_update_within_c_unchanged(
    update: list[np.ndarray], clipping_norm: float
) -> None:
    if l2_norm(update) > clipping_norm:
        update = [a * 0.0 for a in update]

    clipped, _, within = clip_update(update, clipping_norm)

    assert within
    for got, given_array in zip(clipped, update, strict=True):
        np.testing.assert_array_equal(got, given_array)


@settings(max_examples=100, deadline=None)
@given(update=UPDATES, clipping_norm=st.floats(min_value=1e-6, max_value=1e6))
def test_a_clipped_update_keeps_its_direction(
    update: list[np.ndarray], clipping_norm: float
) -> None:
    largest = max(float(np.max(np.abs(a), initial=0.0)) for a in update)
    units = [a / largest for a in update] if largest else update
    unit_norm = l2_norm(units)

    clipped, _, within = clip_update(update, clipping_norm)

    if not within:
        assert l2_norm(clipped) == pytest.approx(clipping_norm, rel=1e-12)
        for got, unit in zip(clipped, units, strict=True):
            expected = unit / unit_norm * clipping_norm
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)


def test_the_zero_vector_is_unchanged_by_clipping() -> None:
    zero = [np.zeros((2, 3)), np.zeros(0), np.zeros(())]

    clipped, norm, within = clip_update(zero, 0.1)

    assert norm == 0.0 and within
    assert all(not c.any() for c in clipped)


@settings(max_examples=100, deadline=None)
@given(update=UPDATES)
def test_the_norm_is_that_of_all_arrays_as_one_vector(update: list[np.ndarray]) -> None:
    expected = reference_norm(update)

    assert l2_norm(update) == pytest.approx(expected, rel=1e-12, abs=0)


def test_huge_and_tiny_values_neither_overflow_nor_underflow() -> None:
    assert l2_norm([np.array([1e200, 1e200])]) == pytest.approx(math.sqrt(2) * 1e200)
    assert l2_norm([np.array([3e-320]), np.array([4e-320])]) == pytest.approx(5e-320, rel=1e-3)
    clipped, _, _ = clip_update([np.array([1e308, -1e308])], 1.0)
    assert l2_norm(clipped) <= 1.0


def test_an_update_with_nan_or_infinity_has_no_norm() -> None:
    with pytest.raises(ConfigError, match="NaN or infinity"):
        clip_update([np.array([1.0, np.nan])], 1.0)
    with pytest.raises(ConfigError, match="NaN or infinity"):
        l2_norm([np.array([np.inf])])


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_a_clipping_norm_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ConfigError, match="clipping norm must be a positive finite number"):
        clip_update([np.ones(2)], bad)


def test_the_noise_s_standard_deviation_is_the_one_asked() -> None:
    rng = np.random.default_rng(0)
    zeros = [np.zeros((200, 250)), np.zeros(50_000)]

    noised = add_gaussian_noise(zeros, 0.3, rng)

    draws = np.concatenate([a.reshape(-1) for a in noised])
    # 100 000 draws: the sample stddev is within 1% of 0.3 with overwhelming probability
    # (its relative standard error is 1/sqrt(2 * 1e5) = 0.22%), and the seed fixes them.
    assert np.std(draws) == pytest.approx(0.3, rel=0.01)
    assert abs(np.mean(draws)) < 5 * 0.3 / math.sqrt(draws.size)


def test_no_noise_returns_float64_copies() -> None:
    a = np.arange(4, dtype=np.float32)

    (noised,) = add_gaussian_noise([a], 0.0, np.random.default_rng(0))

    assert noised.dtype == np.float64 and noised is not a
    np.testing.assert_array_equal(noised, a)
    with pytest.raises(ConfigError, match="noise standard deviation"):
        add_gaussian_noise([a], -1.0, np.random.default_rng(0))


def test_noise_shares_sum_to_the_whole_noise() -> None:
    share = noise_share_stddev(2.0, 16)

    assert share == pytest.approx(0.5)
    assert math.sqrt(16 * share**2) == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="at least 1 share"):
        noise_share_stddev(1.0, 0)


def test_adaptive_clipping_grows_c_when_too_few_updates_fit_and_shrinks_it_otherwise() -> None:
    assert adaptive_clipping_norm(1.0, 0.2, 0.5, 0.2) == pytest.approx(math.exp(0.06))
    assert adaptive_clipping_norm(1.0, 0.9, 0.5, 0.2) == pytest.approx(math.exp(-0.08))
    assert adaptive_clipping_norm(2.0, 0.5, 0.5, 0.2) == 2.0


def test_the_update_noise_multiplier_leaves_the_total_privacy_unchanged() -> None:
    z, count_stddev = 1.0, 5.0

    z_updates = update_noise_multiplier(z, count_stddev)

    assert z_updates**-2 + (2 * count_stddev) ** -2 == pytest.approx(z**-2)
    assert z_updates > z
    with pytest.raises(ConfigError, match="clipped_count_stddev > noise_multiplier / 2"):
        update_noise_multiplier(1.0, 0.5)
