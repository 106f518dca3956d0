"""Weighted averaging of arrays and metrics: FedAvg's mergeable aggregator."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core import AggregationError, ArrayRecord, ConfigError, MetricRecord, RecordDict
from ._kernels import (
    PRECISIONS,
    accumulator_dtype,
    cast_mean,
    fold_into,
    new_scratch,
    split_work,
)

__all__ = ["ArraySpec", "WeightedAverage", "array_spec"]

#: Names, shapes and dtypes an update must have: ``[(name, shape, dtype.str), ...]``.
ArraySpec = list[tuple[str, tuple[int, ...], str]]


def array_spec(arrays: ArrayRecord) -> ArraySpec:
    """The layout of ``arrays``, which every update must match."""
    return [(name, tuple(a.shape), a.dtype.str) for name, a in arrays.items()]


def _check_layout(arrays: ArrayRecord, spec: ArraySpec) -> None:
    names = list(arrays)
    expected = [name for name, _, _ in spec]
    if names != expected:
        raise AggregationError(f"update has arrays {names}, expected {expected}")
    for name, shape, dtype in spec:
        a = arrays[name]
        if tuple(a.shape) != shape:
            raise AggregationError(f"array {name!r} has shape {a.shape}, expected {shape}")
        if a.dtype.str != dtype:
            raise AggregationError(f"array {name!r} has dtype {a.dtype.str}, expected {dtype}")


def _merge_into(mine: np.ndarray[Any, Any], theirs: np.ndarray[Any, Any], *, copy: bool) -> None:
    """``mine = theirs`` (``copy``) or ``mine += theirs``, split across threads if large."""

    def work(start: int, stop: int) -> None:
        if copy:
            np.copyto(mine[start:stop], theirs[start:stop])
        else:
            np.add(mine[start:stop], theirs[start:stop], out=mine[start:stop])

    split_work(mine.size, mine.itemsize, work)


class WeightedAverage:
    """Weighted mean of the replies' arrays and numeric metrics.

    Each reply's content holds an :class:`ArrayRecord` under ``arrays_key`` (skipped when
    ``arrays_key`` is None) and a :class:`MetricRecord` under ``metrics_key`` whose
    ``weight_key`` entry (by default ``num-examples``) is the reply's weight. Memory is
    O(model) whatever the number of replies. A reply is folded whole or not at all: one
    with NaN or infinity in any array is rejected with :class:`AggregationError`.

    Parameters
    ----------
    spec
        The layout updates must have (e.g. ``array_spec(global_arrays)``); by default the
        first reply's.
    workspace
        Accumulators of an earlier aggregate (:meth:`take_workspace`) to reuse when their
        sizes and dtypes fit: a strategy that hands them from round to round writes its
        sums into memory already mapped instead of fresh pages. :meth:`empty` never
        passes them on.
    precision
        ``"float64"`` (default): sums in float64 (complex128 for complex arrays), so float32
        updates times integer weights are exact and results agree across fold orders to
        float64 rounding. ``"native"``: sums in each array's own floating-point dtype
        (float16 in float32; integers and bools still in float64), as Flower's FedAvg sums:
        for float32 models, half the accumulator memory and about twice the folding speed,
        at float32 rounding per fold.
    """

    def __init__(
        self,
        *,
        arrays_key: str | None = "arrays",
        metrics_key: str = "metrics",
        weight_key: str = "num-examples",
        spec: ArraySpec | None = None,
        workspace: list[np.ndarray[Any, Any]] | None = None,
        precision: str = "float64",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(
                f"accumulator precision must be one of {PRECISIONS}, got {precision!r}"
            )
        self.precision = precision
        self.arrays_key = arrays_key
        self.metrics_key = metrics_key
        self.weight_key = weight_key
        self.spec = spec
        self._count = 0
        self._weight = 0.0
        self._sums: list[np.ndarray[Any, Any]] | None = None
        self._metric_sums: dict[str, float] = {}
        self._metric_weights: dict[str, float] = {}
        self._workspace = workspace

    @property
    def count(self) -> int:
        return self._count

    @property
    def total_weight(self) -> float:
        return self._weight

    def empty(self) -> WeightedAverage:
        return WeightedAverage(
            arrays_key=self.arrays_key,
            metrics_key=self.metrics_key,
            weight_key=self.weight_key,
            spec=self.spec,
            precision=self.precision,
        )

    def _weight_of(self, metrics: MetricRecord) -> float:
        if self.weight_key not in metrics:
            raise AggregationError(
                f"reply metrics lack {self.weight_key!r}, the weight of the reply"
            )
        weight = metrics[self.weight_key]
        if isinstance(weight, list) or not math.isfinite(weight) or weight < 0:
            raise AggregationError(
                f"reply weight {self.weight_key!r} must be a finite number >= 0, got {weight!r}"
            )
        return float(weight)

    def add(self, content: RecordDict, node_id: int) -> None:
        metrics = content.get(self.metrics_key)
        if not isinstance(metrics, MetricRecord):
            raise AggregationError(f"reply has no MetricRecord {self.metrics_key!r}")
        weight = self._weight_of(metrics)
        scalars: dict[str, float] = {}
        for name, value in metrics.items():
            if name == self.weight_key or isinstance(value, list):
                continue
            if not math.isfinite(value):
                raise AggregationError(f"reply metric {name!r} is {value}")
            scalars[name] = float(value)
        if self.arrays_key is not None:
            arrays = content.get(self.arrays_key)
            if not isinstance(arrays, ArrayRecord):
                raise AggregationError(f"reply has no ArrayRecord {self.arrays_key!r}")
            spec = self.spec if self.spec is not None else array_spec(arrays)
            _check_layout(arrays, spec)
            self._fold_arrays(arrays, weight)
            # Only a reply that passed every check may fix the layout of later ones.
            self.spec = spec
        for name, value in scalars.items():
            self._metric_sums[name] = self._metric_sums.get(name, 0.0) + weight * value
            self._metric_weights[name] = self._metric_weights.get(name, 0.0) + weight
        self._weight += weight
        self._count += 1

    def _new_sums(self, layout: list[tuple[int, np.dtype[Any]]]) -> list[np.ndarray[Any, Any]]:
        """Accumulators of the given sizes and dtypes: the workspace when it fits."""
        workspace, self._workspace = self._workspace, None
        if workspace is not None and [(w.size, w.dtype) for w in workspace] == layout:
            return workspace
        return [np.empty(size, dtype=dtype) for size, dtype in layout]

    def workspace_layout(self) -> list[tuple[int, np.dtype[Any]]] | None:
        """Sizes and dtypes of the accumulators the first reply will fill, when the spec
        fixes them in advance (None otherwise, or once accumulators exist)."""
        if self.arrays_key is None or self.spec is None or self._sums is not None:
            return None
        return [
            (math.prod(shape), accumulator_dtype(np.dtype(dtype), self.precision))
            for _, shape, dtype in self.spec
        ]

    def use_workspace(self, arrays: list[np.ndarray[Any, Any]]) -> None:
        """Accumulate into ``arrays`` (of :meth:`workspace_layout`) rather than new memory,
        e.g. shared memory a simulation worker sends its partial aggregate through."""
        self._workspace = arrays

    def take_workspace(self) -> list[np.ndarray[Any, Any]] | None:
        """Hand over the accumulators for reuse (see ``workspace``); call it once the mean is
        taken: :meth:`arrays` returns None afterwards (counts and metrics stay)."""
        sums, self._sums = self._sums, None
        return sums

    def _fold_arrays(self, arrays: ArrayRecord, weight: float) -> None:
        """Fold every array of one reply, or none of them if one holds NaN or infinity."""
        # The first reply is written into fresh accumulators (acc = weight * x), sparing a
        # pass that zeroes them.
        fresh = self._sums is None
        if self._sums is None:
            self._sums = self._new_sums(
                [(a.size, accumulator_dtype(a.dtype, self.precision)) for a in arrays.values()]
            )
        sums = self._sums
        largest = max((s.size for s in sums), default=0)
        scratch = {dt: new_scratch(dt, largest) for dt in {s.dtype for s in sums}}
        flat = [a.reshape(-1) for a in arrays.values()]
        for i, (acc, x) in enumerate(zip(sums, flat)):
            if fold_into(acc, x, weight, scratch[acc.dtype], assign=fresh):
                continue
            if fresh:
                # Nothing was folded before this reply: drop the accumulators' content.
                self._sums, self._workspace = None, sums
            else:
                # Take back the arrays of this reply already folded (finite: this succeeds).
                for acc_done, x_done in zip(sums[:i], flat[:i]):
                    fold_into(acc_done, x_done, -weight, scratch[acc_done.dtype])
            raise AggregationError(f"array {list(arrays)[i]!r} holds NaN or infinity")

    def merge(self, other: WeightedAverage) -> None:
        if other._count == 0:
            return
        if other.spec is not None:
            if self.spec is None:
                self.spec = other.spec
            elif self.spec != other.spec:
                raise AggregationError("cannot merge aggregates of different array layouts")
        if other._sums is not None:
            first = self._sums is None
            if self._sums is None:
                self._sums = self._new_sums([(s.size, s.dtype) for s in other._sums])
            for mine, theirs in zip(self._sums, other._sums):
                _merge_into(mine, theirs, copy=first)
        for name, value in other._metric_sums.items():
            self._metric_sums[name] = self._metric_sums.get(name, 0.0) + value
            self._metric_weights[name] = (
                self._metric_weights.get(name, 0.0) + other._metric_weights[name]
            )
        self._weight += other._weight
        self._count += other._count

    def arrays(self) -> ArrayRecord | None:
        """The weighted mean of the arrays; None when no reply carried weight.

        Raises
        ------
        AggregationError
            If arrays were folded but their weights sum to zero.
        """
        if self._sums is None or self.spec is None:
            return None
        if self._weight <= 0:
            raise AggregationError("replies' weights sum to zero: nothing to average")
        return ArrayRecord(
            (name, cast_mean(acc, self._weight, np.dtype(dtype)).reshape(shape))
            for (name, shape, dtype), acc in zip(self.spec, self._sums)
        )

    def metrics(self) -> MetricRecord:
        """Weighted means of the numeric metrics, plus the total weight."""
        out: dict[str, float | int] = {
            name: total / self._metric_weights[name]
            for name, total in self._metric_sums.items()
            if self._metric_weights[name] > 0
        }
        out[self.weight_key] = int(self._weight) if self._weight.is_integer() else self._weight
        return MetricRecord(out)
