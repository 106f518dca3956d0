"""Robust aggregation strategies: FedMedian, FedTrimmedAvg, Krum, Multi-Krum, Bulyan.

These need every update at once, so they fold replies into :class:`AllUpdates`, which keeps
a copy of each reply's arrays: server memory is O(n x model) for n replies, and partial
aggregates from workers are merged at the root by concatenation. Each strategy is
assembled from FedAvg's parts (sampling, messages, evaluation) and a
:class:`RobustTraining` that runs its kernel (of :mod:`._robust_kernels`) over the
updates. Updates are ordered by node id before the kernel runs, so the result does not
depend on the order replies arrived in.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import AggregationError, ArrayRecord, ConfigError, MetricRecord, RecordDict
from ..server import Grid
from ._casting import to_dtype
from ._composed import ComposedStrategy
from ._metrics import WeightedMetrics
from ._replies import (
    ArraySpec,
    RecordNames,
    array_spec,
    check_finite,
    check_layout,
    reply_arrays,
)
from ._robust_kernels import (
    Model,
    bulyan,
    coordinate_median,
    krum_select,
    trimmed_mean,
    weighted_mean,
)
from ._training import Training

__all__ = [
    "AllUpdates",
    "Bulyan",
    "FedMedian",
    "FedTrimmedAvg",
    "Krum",
    "MultiKrum",
    "RobustTraining",
]

#: A robust kernel: the aggregate (float64 layers) of updates, given their weights.
Combine = Callable[[list[Model], list[float]], list[np.ndarray[Any, Any]]]


class AllUpdates:
    """An aggregator that keeps every reply: ``(node id, arrays, weight)``.

    Memory is O(n x model). Numeric metrics are averaged on the fly, weighted by
    ``weight_key``, as :class:`WeightedAverage` does. Arrays are copied on :meth:`add` and
    :meth:`merge`, so no buffer of a reply or of another aggregator is kept.
    """

    def __init__(
        self,
        *,
        arrays_key: str = "arrays",
        metrics_key: str = "metrics",
        weight_key: str = "num-examples",
        spec: ArraySpec | None = None,
    ) -> None:
        self.arrays_key = arrays_key
        self.metrics_key = metrics_key
        self.weight_key = weight_key
        self.spec = spec
        self._metrics = WeightedMetrics(metrics_key=metrics_key, weight_key=weight_key)
        self._updates: list[tuple[int, ArrayRecord, float]] = []

    @property
    def count(self) -> int:
        return len(self._updates)

    def empty(self) -> AllUpdates:
        return AllUpdates(
            arrays_key=self.arrays_key,
            metrics_key=self.metrics_key,
            weight_key=self.weight_key,
            spec=self.spec,
        )

    def add(self, content: RecordDict, node_id: int) -> None:
        arrays = reply_arrays(content, self.arrays_key)
        spec = self.spec if self.spec is not None else array_spec(arrays)
        check_layout(arrays, spec, self.arrays_key)
        check_finite(arrays)
        metrics = self._metrics.read(content)
        self._metrics.fold(metrics)
        self.spec = spec
        copy = ArrayRecord((name, np.array(a)) for name, a in arrays.items())
        self._updates.append((node_id, copy, metrics.weight))

    def merge(self, other: AllUpdates) -> None:
        if other.count == 0:
            return
        if self.spec is not None and other.spec is not None and self.spec != other.spec:
            raise AggregationError("cannot merge aggregates of different array layouts")
        self.spec = self.spec if self.spec is not None else other.spec
        self._metrics.merge(other._metrics)
        for node_id, arrays, weight in other._updates:
            copy = ArrayRecord((name, np.array(a)) for name, a in arrays.items())
            self._updates.append((node_id, copy, weight))

    def updates(self) -> list[tuple[int, ArrayRecord, float]]:
        """``(node id, arrays, weight)`` of every reply, ordered by node id (stable)."""
        return sorted(self._updates, key=lambda u: u[0])

    def metrics(self) -> MetricRecord:
        """Weighted means of the replies' numeric metrics, plus the total weight."""
        return self._metrics.metrics()


class RobustTraining(Training):
    """The robust strategies' training: replies fold into :class:`AllUpdates`, and a robust
    kernel combines the updates, ordered by node id, into the new global arrays (cast back
    to their dtypes). A round whose updates the kernel cannot combine (too few for the
    method) keeps the global arrays.

    Parameters
    ----------
    combine
        The kernel: the aggregate (float64 layers) of updates, given their weights.
    """

    def __init__(self, combine: Combine) -> None:
        self.combine = combine

    def aggregator(self, arrays: ArrayRecord, records: RecordNames, grid: Grid) -> AllUpdates:
        return AllUpdates(
            arrays_key=records.arrays_key,
            metrics_key=records.metrics_key,
            weight_key=records.weight_key,
            spec=array_spec(arrays),
        )

    def result(self, aggregator: AllUpdates, arrays: ArrayRecord) -> ArrayRecord | None:
        updates = aggregator.updates()
        try:
            combined = self.combine(
                [list(u.values()) for _, u, _ in updates], [w for _, _, w in updates]
            )
        except AggregationError:
            return None
        return ArrayRecord(
            (name, to_dtype(value, a.dtype).reshape(a.shape))
            for (name, a), value in zip(arrays.items(), combined)
        )


class _RobustStrategy(ComposedStrategy):
    """FedAvg's parts with a :class:`RobustTraining` over the strategy's kernel."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(**options)
        self._training = RobustTraining(self.combine)

    @abc.abstractmethod
    def combine(self, updates: list[Model], weights: list[float]) -> list[np.ndarray[Any, Any]]:
        """The aggregate of the updates' layers (float64), from the robust kernel.

        Raises
        ------
        AggregationError
            If the updates cannot be combined (e.g. too few for the method).
        """


class FedMedian(_RobustStrategy):
    """The coordinate-wise median of the updates (Yin et al., 2018), unweighted.

    Parameters
    ----------
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(options)

    def combine(self, updates: list[Model], weights: list[float]) -> list[np.ndarray[Any, Any]]:
        return coordinate_median(updates)


class FedTrimmedAvg(_RobustStrategy):
    """The coordinate-wise trimmed mean (Yin et al., 2018), unweighted.

    Parameters
    ----------
    beta
        Fraction cut from each end: ``floor(beta * n)`` smallest and largest values of each
        coordinate are dropped (Flower's default 0.2).
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If ``beta`` is outside [0, 0.5).
    """

    def __init__(self, *, beta: float = 0.2, **options: Any) -> None:
        if not 0.0 <= beta < 0.5:
            raise ConfigError(f"beta must be in [0, 0.5), got {beta}")
        super().__init__(options)
        self.beta = beta

    def combine(self, updates: list[Model], weights: list[float]) -> list[np.ndarray[Any, Any]]:
        return trimmed_mean(updates, self.beta)


def _check_malicious(num_malicious_nodes: int) -> None:
    if num_malicious_nodes < 0:
        raise ConfigError(f"num_malicious_nodes must be >= 0, got {num_malicious_nodes}")


class Krum(_RobustStrategy):
    """The update with the lowest Krum score (Blanchard et al., 2017): the smallest sum of
    squared distances to its ``n - f - 2`` nearest other updates.

    Parameters
    ----------
    num_malicious_nodes
        ``f``, the number of Byzantine nodes tolerated.
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If ``num_malicious_nodes`` is negative.
    """

    def __init__(self, *, num_malicious_nodes: int = 0, **options: Any) -> None:
        _check_malicious(num_malicious_nodes)
        super().__init__(options)
        self.num_malicious_nodes = num_malicious_nodes

    def combine(self, updates: list[Model], weights: list[float]) -> list[np.ndarray[Any, Any]]:
        [best] = krum_select(updates, self.num_malicious_nodes)
        return [np.asarray(a, dtype=np.float64) for a in updates[best]]


class MultiKrum(_RobustStrategy):
    """The weighted average of the ``m`` updates with the lowest Krum scores.

    Parameters
    ----------
    num_malicious_nodes
        ``f``, the number of Byzantine nodes tolerated.
    num_nodes_to_select
        ``m``, how many updates are averaged (at most the number of replies); 1 is Krum.
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If ``num_malicious_nodes`` is negative or ``num_nodes_to_select`` below 1.
    """

    def __init__(
        self, *, num_malicious_nodes: int = 0, num_nodes_to_select: int = 1, **options: Any
    ) -> None:
        _check_malicious(num_malicious_nodes)
        if num_nodes_to_select < 1:
            raise ConfigError(f"num_nodes_to_select must be >= 1, got {num_nodes_to_select}")
        super().__init__(options)
        self.num_malicious_nodes = num_malicious_nodes
        self.num_nodes_to_select = num_nodes_to_select

    def combine(self, updates: list[Model], weights: list[float]) -> list[np.ndarray[Any, Any]]:
        num = min(self.num_nodes_to_select, len(updates))
        chosen = krum_select(updates, self.num_malicious_nodes, num)
        return weighted_mean([updates[i] for i in chosen], [weights[i] for i in chosen])


class Bulyan(_RobustStrategy):
    """Bulyan over Krum (El Mhamdi et al., 2018), unweighted.

    Rounds with fewer than ``4f + 3`` replies keep the global arrays.

    Parameters
    ----------
    num_malicious_nodes
        ``f``, the number of Byzantine nodes tolerated.
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If ``num_malicious_nodes`` is negative.
    """

    def __init__(self, *, num_malicious_nodes: int = 0, **options: Any) -> None:
        _check_malicious(num_malicious_nodes)
        super().__init__(options)
        self.num_malicious_nodes = num_malicious_nodes

    def combine(self, updates: list[Model], weights: list[float]) -> list[np.ndarray[Any, Any]]:
        return bulyan(updates, self.num_malicious_nodes)
