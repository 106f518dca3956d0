"""Weighted means of the replies' metrics: the part every aggregator shares.

Every aggregator of the package weighs a reply by its ``num-examples`` metric and averages
the reply's other numeric metrics with that weight; they hold a :class:`WeightedMetrics`
for it. On its own it is the aggregator of federated evaluation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..core import AggregationError, MetricRecord, RecordDict

__all__ = ["MetricReply", "WeightedMetrics"]


class MetricReply(NamedTuple):
    """What :meth:`WeightedMetrics.read` found valid in one reply (a tuple: read for every
    reply, it must cost next to nothing to make)."""

    weight: float
    scalars: dict[str, float]


class WeightedMetrics:
    """Mergeable weighted means of the replies' numeric metrics (lists are skipped).

    Each reply's content holds a :class:`MetricRecord` under ``metrics_key`` whose
    ``weight_key`` entry is the reply's weight (a finite number >= 0). A reply with NaN or
    infinity in a numeric metric is rejected.
    """

    def __init__(self, *, metrics_key: str = "metrics", weight_key: str = "num-examples") -> None:
        self.metrics_key = metrics_key
        self.weight_key = weight_key
        self._count = 0
        self._weight = 0.0
        self._sums: dict[str, float] = {}
        self._weights: dict[str, float] = {}

    @property
    def count(self) -> int:
        return self._count

    @property
    def total_weight(self) -> float:
        """The sum of the folded replies' weights."""
        return self._weight

    def empty(self) -> WeightedMetrics:
        return WeightedMetrics(metrics_key=self.metrics_key, weight_key=self.weight_key)

    def read(self, content: RecordDict) -> MetricReply:
        """The weight and numeric metrics of a reply, checked but not folded in, so an
        aggregator can check the rest of the reply before it folds anything.

        Raises
        ------
        AggregationError
            If the reply has no metrics, no valid weight, or a metric that is not finite.
        """
        metrics = content.get(self.metrics_key)
        if not isinstance(metrics, MetricRecord):
            raise AggregationError(f"reply has no MetricRecord {self.metrics_key!r}")
        weight = metrics.get(self.weight_key)
        if weight is None:
            raise AggregationError(
                f"reply metrics lack {self.weight_key!r}, the weight of the reply"
            )
        if isinstance(weight, list) or not math.isfinite(weight) or weight < 0:
            raise AggregationError(
                f"reply weight {self.weight_key!r} must be a finite number >= 0, got {weight!r}"
            )
        scalars: dict[str, float] = {}
        for name, value in metrics.items():
            if name == self.weight_key or isinstance(value, list):
                continue
            if not math.isfinite(value):
                raise AggregationError(f"reply metric {name!r} is {value}")
            scalars[name] = float(value)
        return MetricReply(float(weight), scalars)

    def fold(self, reply: MetricReply) -> None:
        """Fold in a reply :meth:`read` accepted."""
        weight = reply.weight
        for name, value in reply.scalars.items():
            self._sums[name] = self._sums.get(name, 0.0) + weight * value
            self._weights[name] = self._weights.get(name, 0.0) + weight
        self._weight += weight
        self._count += 1

    def add(self, content: RecordDict, node_id: int) -> None:
        self.fold(self.read(content))

    def merge(self, other: WeightedMetrics) -> None:
        for name, value in other._sums.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
            self._weights[name] = self._weights.get(name, 0.0) + other._weights[name]
        self._weight += other._weight
        self._count += other._count

    def metrics(self) -> MetricRecord:
        """Weighted means of the numeric metrics, plus the total weight."""
        out: dict[str, float | int] = {
            name: total / self._weights[name]
            for name, total in self._sums.items()
            if self._weights[name] > 0
        }
        out[self.weight_key] = int(self._weight) if self._weight.is_integer() else self._weight
        return MetricRecord(out)
