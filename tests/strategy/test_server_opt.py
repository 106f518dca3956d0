from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.strategy._server_opt import (
    adagrad_step,
    adam_rate,
    adam_step,
    momentum_step,
    yogi_step,
)

Arrays = list[np.ndarray[Any, Any]]

finite = st.floats(-1e3, 1e3, allow_nan=False)
unit = st.floats(0.0, 0.999)


@st.composite
def models(draw: st.DrawFn, count: int = 1) -> list[Arrays]:
    shapes = draw(
        st.lists(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3), min_size=1, max_size=3)
    )
    return [
        [draw(hnp.arrays(np.float64, s, elements=finite)) for s in shapes] for _ in range(count)
    ]


def zeros(like: Arrays) -> Arrays:
    return [np.zeros_like(a) for a in like]


def same(a: Arrays, b: Arrays) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@given(models(), st.floats(0.0, 10.0), unit, unit, unit, st.floats(1e-9, 1.0))
def test_a_zero_pseudo_gradient_keeps_the_arrays(
    x: list[Arrays], eta: float, beta_1: float, beta_2: float, momentum: float, tau: float
) -> None:
    [current] = x
    delta = zeros(current)

    assert same(momentum_step(current, delta, None, learning_rate=eta, beta=momentum)[0], current)
    for b1 in (0.0, beta_1):
        assert same(
            adagrad_step(current, delta, None, None, eta=eta, beta_1=b1, tau=tau)[0], current
        )
    for correct in (True, False):
        adam = adam_step(
            current,
            delta,
            None,
            None,
            eta=eta,
            beta_1=beta_1,
            beta_2=beta_2,
            tau=tau,
            step=1,
            bias_correction=correct,
        )
        assert same(adam[0], current)
    yogi = yogi_step(current, delta, None, None, eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
    assert same(yogi[0], current)


@given(models(count=3), st.floats(0.1, 2.0), st.floats(0.0, 0.99))
def test_momentum_matches_its_recurrence(x: list[Arrays], lr: float, beta: float) -> None:
    current, d1, d2 = x

    after1, v1 = momentum_step(current, d1, None, learning_rate=lr, beta=beta)
    after2, v2 = momentum_step(after1, d2, v1, learning_rate=lr, beta=beta)

    for i, c in enumerate(current):
        expected_v2 = beta * (-d1[i]) + (-d2[i]) if beta > 0 else -d2[i]
        np.testing.assert_allclose(after1[i], c + lr * d1[i], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(after2[i], after1[i] - lr * expected_v2, rtol=1e-12, atol=1e-9)
    assert (v2 is None) == (beta == 0)


def test_without_momentum_and_rate_one_the_step_lands_on_the_average() -> None:
    current = [np.array([1.0, 2.0])]
    average = [np.array([3.0, -1.0])]

    new, state = momentum_step(
        current, [average[0] - current[0]], None, learning_rate=1.0, beta=0.0
    )

    assert new[0].tolist() == [3.0, -1.0] and state is None


def test_adam_without_bias_correction_first_step_by_hand() -> None:
    current, delta = [np.array([1.0])], [np.array([0.5])]

    new, _, _ = adam_step(
        current,
        delta,
        None,
        None,
        eta=0.1,
        beta_1=0.9,
        beta_2=0.99,
        tau=1e-3,
        step=1,
        bias_correction=False,
    )

    # m = 0.05, v = 0.0025: the step is eta * m / (sqrt(v) + tau)
    assert new[0][0] == pytest.approx(1.0 + 0.1 * 0.05 / (0.05 + 1e-3), rel=1e-14)


def test_adam_first_step_by_hand() -> None:
    current, delta = [np.array([1.0])], [np.array([0.5])]

    new, m, v = adam_step(
        current, delta, None, None, eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-3, step=1
    )

    assert m[0][0] == pytest.approx(0.05, rel=1e-15)
    assert v[0][0] == pytest.approx(0.0025, rel=1e-15)
    rate = 0.1 * math.sqrt(1 - 0.99**2) / (1 - 0.9**2)
    assert new[0][0] == pytest.approx(1.0 + rate * 0.05 / (0.05 + 1e-3), rel=1e-14)


def test_yogi_second_moment_moves_towards_delta_squared() -> None:
    delta = [np.array([2.0, 0.0])]
    v = [np.array([1.0, 1.0])]

    _, _, new_v = yogi_step(
        [np.zeros(2)], delta, None, v, eta=0.01, beta_1=0.9, beta_2=0.5, tau=1e-3
    )

    # v < delta^2: v grows by (1 - beta_2) delta^2; v > delta^2 = 0: unchanged
    assert new_v[0].tolist() == [1.0 + 0.5 * 4.0, 1.0]


@given(models(count=3), st.floats(0.01, 1.0), st.floats(1e-6, 1.0))
def test_adagrad_accumulates_squared_deltas(x: list[Arrays], eta: float, tau: float) -> None:
    current, d1, d2 = x

    after1, m1, v1 = adagrad_step(current, d1, None, None, eta=eta, beta_1=0.0, tau=tau)
    _, m2, v2 = adagrad_step(after1, d2, m1, v1, eta=eta, beta_1=0.0, tau=tau)

    for i in range(len(current)):
        np.testing.assert_allclose(v2[i], d1[i] ** 2 + d2[i] ** 2, rtol=1e-12)
    assert m1 is None and m2 is None


@given(models(count=3), st.floats(0.01, 1.0), st.floats(0.01, 0.99), st.floats(1e-6, 1.0))
def test_adagrad_first_moment_matches_its_recurrence(
    x: list[Arrays], eta: float, beta_1: float, tau: float
) -> None:
    current, d1, d2 = x

    after1, m1, v1 = adagrad_step(current, d1, None, None, eta=eta, beta_1=beta_1, tau=tau)
    after2, m2, v2 = adagrad_step(after1, d2, m1, v1, eta=eta, beta_1=beta_1, tau=tau)

    assert m2 is not None
    for i, c in enumerate(current):
        expected_m1 = (1 - beta_1) * d1[i]
        expected_m2 = beta_1 * expected_m1 + (1 - beta_1) * d2[i]
        np.testing.assert_allclose(m2[i], expected_m2, rtol=1e-12, atol=1e-12)
        # the second moment is the same sum of squares whatever beta_1
        np.testing.assert_allclose(v2[i], d1[i] ** 2 + d2[i] ** 2, rtol=1e-12)
        np.testing.assert_allclose(
            after1[i], c + eta * expected_m1 / (np.abs(d1[i]) + tau), rtol=1e-12, atol=1e-12
        )
        np.testing.assert_allclose(
            after2[i], after1[i] + eta * m2[i] / (np.sqrt(v2[i]) + tau), rtol=1e-12, atol=1e-12
        )


@given(models(count=2), st.floats(0.01, 1.0), st.floats(1e-6, 1.0))
def test_adagrad_without_first_moment_steps_along_the_pseudo_gradient(
    x: list[Arrays], eta: float, tau: float
) -> None:
    current, delta = x

    new, _, v = adagrad_step(current, delta, None, None, eta=eta, beta_1=0.0, tau=tau)

    assert same(new, [c + eta * d / (np.sqrt(b) + tau) for c, d, b in zip(current, delta, v)])


def test_adagrad_first_step_with_first_moment_by_hand() -> None:
    new, m, v = adagrad_step(
        [np.array([1.0])], [np.array([0.5])], None, None, eta=0.1, beta_1=0.9, tau=1e-3
    )

    assert m is not None
    assert m[0][0] == pytest.approx(0.05, rel=1e-15)
    assert v[0][0] == 0.25
    assert new[0][0] == pytest.approx(1.0 + 0.1 * 0.05 / (0.5 + 1e-3), rel=1e-14)


@given(
    models(count=3),
    st.floats(0.01, 1.0),
    unit,
    unit,
    st.floats(1e-6, 1.0),
    st.integers(0, 1000),
    st.integers(0, 1000),
)
def test_adam_without_bias_correction_ignores_the_round(
    x: list[Arrays], eta: float, beta_1: float, beta_2: float, tau: float, s1: int, s2: int
) -> None:
    current, delta, state = x
    state = [np.abs(a) for a in state]
    kwargs: dict[str, Any] = {"eta": eta, "beta_1": beta_1, "beta_2": beta_2, "tau": tau}

    first = adam_step(current, delta, state, state, step=s1, bias_correction=False, **kwargs)
    second = adam_step(current, delta, state, state, step=s2, bias_correction=False, **kwargs)

    for a, b in zip(first, second, strict=True):
        assert same(a, b)


@given(models(count=3), st.floats(0.01, 1.0), unit, unit, st.floats(1e-6, 1.0), st.integers(0, 50))
def test_adam_conventions_share_the_moments_and_differ_by_the_rate(
    x: list[Arrays], eta: float, beta_1: float, beta_2: float, tau: float, step: int
) -> None:
    current, delta, state = x
    state = [np.abs(a) for a in state]
    kwargs: dict[str, Any] = {"beta_1": beta_1, "beta_2": beta_2, "tau": tau, "step": step}

    corrected = adam_step(current, delta, state, state, eta=eta, **kwargs)
    plain = adam_step(current, delta, state, state, eta=eta, bias_correction=False, **kwargs)
    # the uncorrected step with eta set to the corrected rate is the corrected step
    rate = adam_rate(eta, beta_1, beta_2, step)
    rescaled = adam_step(current, delta, state, state, eta=rate, bias_correction=False, **kwargs)

    assert same(corrected[1], plain[1]) and same(corrected[2], plain[2])
    assert same(corrected[0], rescaled[0])
    for new, c, m, v in zip(plain[0], current, plain[1], plain[2], strict=True):
        np.testing.assert_allclose(new, c + eta * m / (np.sqrt(v) + tau), rtol=1e-12, atol=1e-12)


@given(models(count=3))
def test_steps_do_not_modify_their_arguments(x: list[Arrays]) -> None:
    current, delta, state = x
    state = [np.abs(s) for s in state]
    before = [[a.copy() for a in m] for m in (current, delta, state)]

    momentum_step(current, delta, state, learning_rate=1.0, beta=0.9)
    adagrad_step(current, delta, state, state, eta=0.1, beta_1=0.9, tau=1e-3)
    for correct in (True, False):
        adam_step(
            current,
            delta,
            state,
            state,
            eta=0.1,
            beta_1=0.9,
            beta_2=0.99,
            tau=1e-3,
            step=2,
            bias_correction=correct,
        )
    yogi_step(current, delta, state, state, eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-3)

    for m, b in zip((current, delta, state), before, strict=True):
        assert same(m, b)
