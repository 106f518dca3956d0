"""Server optimizers (Reddi et al., 2021; Hsu et al., 2019) as pure kernels over arrays.

A server optimizer treats ``delta = mean(updated arrays) - global arrays`` as a
pseudo-gradient and takes one step with it. Every ``*_step`` function here takes the current arrays,
the pseudo-gradient and the optimizer's state as lists of float64 arrays, and returns the
new arrays and the new state without modifying its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Arrays",
    "adagrad_step",
    "adam_rate",
    "adam_step",
    "momentum_step",
    "yogi_step",
]

#: Layers of a model as float64 arrays, in record order.
Arrays = list[np.ndarray[Any, Any]]


def _zeros_like(arrays: Sequence[np.ndarray[Any, Any]]) -> Arrays:
    return [np.zeros_like(a) for a in arrays]


def momentum_step(
    current: Sequence[np.ndarray[Any, Any]],
    delta: Sequence[np.ndarray[Any, Any]],
    momentum: Sequence[np.ndarray[Any, Any]] | None,
    *,
    learning_rate: float,
    beta: float,
) -> tuple[Arrays, Arrays | None]:
    """FedAvgM: SGD with server momentum on the pseudo-gradient ``-delta``.

    ``v = beta * v + (current - mean)``, then ``current - learning_rate * v``. With
    ``beta == 0`` no momentum is kept and None is returned as the state.
    """
    gradient = [-d for d in delta]
    if beta <= 0.0:
        return [x - learning_rate * g for x, g in zip(current, gradient)], None
    previous = momentum if momentum is not None else _zeros_like(gradient)
    velocity = [beta * v + g for v, g in zip(previous, gradient)]
    return [x - learning_rate * v for x, v in zip(current, velocity)], velocity


def _first_moment(
    delta: Sequence[np.ndarray[Any, Any]],
    m: Sequence[np.ndarray[Any, Any]] | None,
    beta_1: float,
) -> Arrays:
    previous = m if m is not None else _zeros_like(delta)
    return [beta_1 * a + (1.0 - beta_1) * d for a, d in zip(previous, delta)]


def _apply(
    current: Sequence[np.ndarray[Any, Any]],
    m: Sequence[np.ndarray[Any, Any]],
    v: Sequence[np.ndarray[Any, Any]],
    eta: float,
    tau: float,
) -> Arrays:
    return [x + eta * a / (np.sqrt(b) + tau) for x, a, b in zip(current, m, v)]


def adagrad_step(
    current: Sequence[np.ndarray[Any, Any]],
    delta: Sequence[np.ndarray[Any, Any]],
    m: Sequence[np.ndarray[Any, Any]] | None,
    v: Sequence[np.ndarray[Any, Any]] | None,
    *,
    eta: float,
    beta_1: float,
    tau: float,
) -> tuple[Arrays, Arrays | None, Arrays]:
    """FedAdagrad: ``v += delta**2``; ``current + eta * m / (sqrt(v) + tau)``.

    ``m = beta_1 * m + (1 - beta_1) * delta`` is the first moment of Reddi et al.'s
    Algorithm 2. With ``beta_1 == 0`` (Flower's FedAdagrad) ``m`` is ``delta`` itself: no
    first moment is kept and None is returned as its state.
    """
    previous = v if v is not None else _zeros_like(delta)
    new_v = [b + np.square(d) for b, d in zip(previous, delta)]
    if beta_1 <= 0.0:
        return _apply(current, delta, new_v, eta, tau), None, new_v
    new_m = _first_moment(delta, m, beta_1)
    return _apply(current, new_m, new_v, eta, tau), new_m, new_v


def adam_rate(eta: float, beta_1: float, beta_2: float, step: int) -> float:
    """Flower's bias-corrected FedAdam rate ``eta * sqrt(1 - beta_2**(step+1)) /
    (1 - beta_1**(step+1))`` (``step`` is the server round)."""
    rate: float = eta * math.sqrt(1.0 - beta_2 ** (step + 1.0)) / (1.0 - beta_1 ** (step + 1.0))
    return rate


def adam_step(
    current: Sequence[np.ndarray[Any, Any]],
    delta: Sequence[np.ndarray[Any, Any]],
    m: Sequence[np.ndarray[Any, Any]] | None,
    v: Sequence[np.ndarray[Any, Any]] | None,
    *,
    eta: float,
    beta_1: float,
    beta_2: float,
    tau: float,
    step: int,
    bias_correction: bool = True,
) -> tuple[Arrays, Arrays, Arrays]:
    """FedAdam: ``m = beta_1 m + (1 - beta_1) delta``, ``v = beta_2 v + (1 - beta_2)
    delta**2``, ``current + rate * m / (sqrt(v) + tau)``.

    With ``bias_correction`` the rate is :func:`adam_rate` (Flower's); without, it is
    ``eta`` at every round, as in Reddi et al.'s Algorithm 2 and FLamby, and ``step`` is
    not used.
    """
    new_m = _first_moment(delta, m, beta_1)
    previous = v if v is not None else _zeros_like(delta)
    new_v = [beta_2 * b + (1.0 - beta_2) * np.square(d) for b, d in zip(previous, delta)]
    rate = adam_rate(eta, beta_1, beta_2, step) if bias_correction else eta
    return _apply(current, new_m, new_v, rate, tau), new_m, new_v


def yogi_step(
    current: Sequence[np.ndarray[Any, Any]],
    delta: Sequence[np.ndarray[Any, Any]],
    m: Sequence[np.ndarray[Any, Any]] | None,
    v: Sequence[np.ndarray[Any, Any]] | None,
    *,
    eta: float,
    beta_1: float,
    beta_2: float,
    tau: float,
) -> tuple[Arrays, Arrays, Arrays]:
    """FedYogi: ``v -= (1 - beta_2) * delta**2 * sign(v - delta**2)``."""
    new_m = _first_moment(delta, m, beta_1)
    previous = v if v is not None else _zeros_like(delta)
    new_v = []
    for b, d in zip(previous, delta):
        d2 = np.square(d)
        new_v.append(b - (1.0 - beta_2) * d2 * np.sign(b - d2))
    return _apply(current, new_m, new_v, eta, tau), new_m, new_v
