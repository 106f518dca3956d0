"""Byzantine-robust aggregation as pure kernels: median, trimmed mean, Krum, Bulyan.

An update is a model: a sequence of arrays (layers). Every function takes a sequence of
updates with the same layout, computes in float64 and returns float64 arrays (or indices);
none modifies its arguments. Unlike a weighted mean these need every update at once, so
their memory is O(n x model) for n updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import AggregationError

__all__ = [
    "Model",
    "bulyan",
    "coordinate_median",
    "krum_scores",
    "krum_select",
    "pairwise_squared_distances",
    "trimmed_mean",
    "weighted_mean",
]

#: One update: its layers, in record order.
Model = Sequence[np.ndarray[Any, Any]]


def _check(updates: Sequence[Model]) -> None:
    if not updates:
        raise AggregationError("no updates to aggregate")


def _stack(updates: Sequence[Model], layer: int) -> np.ndarray[Any, Any]:
    return np.stack([np.asarray(u[layer], dtype=np.float64) for u in updates])


def weighted_mean(updates: Sequence[Model], weights: Sequence[float]) -> list[np.ndarray[Any, Any]]:
    """``sum(w_i * u_i) / sum(w_i)``.

    Raises
    ------
    AggregationError
        If there are no updates or the weights sum to zero.
    """
    _check(updates)
    total = float(sum(weights))
    if total <= 0:
        raise AggregationError("weights sum to zero: nothing to average")
    factors = np.asarray(weights, dtype=np.float64) / total
    return [np.tensordot(factors, _stack(updates, i), axes=1) for i in range(len(updates[0]))]


def coordinate_median(updates: Sequence[Model]) -> list[np.ndarray[Any, Any]]:
    """The coordinate-wise median (Yin et al., 2018).

    Raises
    ------
    AggregationError
        If there are no updates.
    """
    _check(updates)
    return [np.median(_stack(updates, i), axis=0) for i in range(len(updates[0]))]


def trimmed_mean(updates: Sequence[Model], beta: float) -> list[np.ndarray[Any, Any]]:
    """The coordinate-wise mean after dropping the ``floor(beta * n)`` smallest and largest
    values of each coordinate (Yin et al., 2018).

    Raises
    ------
    AggregationError
        If there are no updates or ``beta`` is outside [0, 0.5).
    """
    _check(updates)
    if not 0.0 <= beta < 0.5:
        raise AggregationError(f"beta must be in [0, 0.5), got {beta}")
    n = len(updates)
    cut = int(beta * n)
    out = []
    for i in range(len(updates[0])):
        stacked = _stack(updates, i)
        if cut:
            stacked = np.partition(stacked, (cut, n - cut - 1), axis=0)[cut : n - cut]
        out.append(stacked.mean(axis=0))
    return out


def pairwise_squared_distances(updates: Sequence[Model]) -> np.ndarray[Any, Any]:
    """The ``n x n`` matrix of squared Euclidean distances between the updates.

    Differences are taken directly, not through ``|a|^2 + |b|^2 - 2ab`` (which cancels
    badly when updates are close): O(n^2 x model) time.
    """
    n = len(updates)
    distances = np.zeros((n, n))
    for i in range(len(updates[0]) if n else 0):
        stacked = _stack(updates, i).reshape(n, -1)
        for a in range(n):
            diff = stacked[a + 1 :] - stacked[a]
            row = np.einsum("ij,ij->i", diff, diff)
            distances[a, a + 1 :] += row
            distances[a + 1 :, a] += row
    return distances


def krum_scores(distances: np.ndarray[Any, Any], num_malicious: int) -> np.ndarray[Any, Any]:
    """Krum's score of each update: the sum of its squared distances to its
    ``max(1, n - f - 2)`` nearest other updates (Blanchard et al., 2017)."""
    n = distances.shape[0]
    closest = max(1, n - num_malicious - 2)
    scores = np.empty(n)
    for i in range(n):
        others = np.delete(distances[i], i)
        scores[i] = np.sort(others)[:closest].sum()
    return scores


def krum_select(updates: Sequence[Model], num_malicious: int, num_to_select: int = 1) -> list[int]:
    """Indices of the ``num_to_select`` updates with the lowest Krum scores, best first
    (ties go to the lower index). ``num_to_select == 1`` is Krum, more is Multi-Krum.

    Raises
    ------
    AggregationError
        If there are no updates, ``num_malicious < 0`` or ``num_to_select`` is not in
        ``[1, n]``.
    """
    _check(updates)
    if num_malicious < 0:
        raise AggregationError(f"num_malicious must be >= 0, got {num_malicious}")
    if not 1 <= num_to_select <= len(updates):
        raise AggregationError(f"cannot select {num_to_select} of {len(updates)} updates")
    scores = krum_scores(pairwise_squared_distances(updates), num_malicious)
    order = np.argsort(scores, kind="stable")
    return [int(i) for i in order[:num_to_select]]


def bulyan(updates: Sequence[Model], num_malicious: int) -> list[np.ndarray[Any, Any]]:
    """Bulyan (El Mhamdi et al., 2018) over Krum.

    Krum picks ``theta = n - 2f`` updates one at a time, each from those not yet picked;
    then each coordinate is the mean of the ``beta = theta - 2f`` picked values closest to
    the picked updates' coordinate-wise median.

    Raises
    ------
    AggregationError
        If ``n < 4f + 3`` (the method's assumption) or ``num_malicious < 0``.
    """
    _check(updates)
    n, f = len(updates), num_malicious
    if f < 0:
        raise AggregationError(f"num_malicious must be >= 0, got {f}")
    if n < 4 * f + 3:
        raise AggregationError(f"Bulyan needs n >= 4f + 3 updates: {n} < {4 * f + 3}")
    theta = n - 2 * f
    beta = theta - 2 * f
    distances = pairwise_squared_distances(updates)
    remaining = list(range(n))
    picked: list[int] = []
    for _ in range(theta):
        scores = krum_scores(distances[np.ix_(remaining, remaining)], f)
        picked.append(remaining.pop(int(np.argmin(scores))))
    chosen = [updates[i] for i in picked]
    out = []
    for i in range(len(updates[0])):
        stacked = _stack(chosen, i)
        median = np.median(stacked, axis=0)
        nearest = np.argsort(np.abs(stacked - median), axis=0, kind="stable")[:beta]
        out.append(np.take_along_axis(stacked, nearest, axis=0).mean(axis=0))
    return out
