"""Weighted averaging of arrays and metrics: FedAvg's mergeable aggregator."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core import AggregationError, ArrayRecord, ConfigError, MetricRecord, RecordDict
from ..tuning import split_work
from ._kernels import PRECISIONS, accumulator_dtype, cast_mean, fold_into, new_scratch
from ._metrics import WeightedMetrics
from ._replies import ArraySpec, array_spec, check_layout, non_finite, reply_arrays

__all__ = ["WeightedAverage", "check_precision"]


def check_precision(precision: str) -> None:
    """Check an accumulator precision.

    Raises
    ------
    ConfigError
        If ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"accumulator precision must be one of {PRECISIONS}, got {precision!r}")


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
        check_precision(precision)
        self.precision = precision
        self.arrays_key = arrays_key
        self.spec = spec
        self._metrics = WeightedMetrics(metrics_key=metrics_key, weight_key=weight_key)
        self._sums: list[np.ndarray[Any, Any]] | None = None
        self._workspace = workspace

    @property
    def metrics_key(self) -> str:
        return self._metrics.metrics_key

    @property
    def weight_key(self) -> str:
        return self._metrics.weight_key

    @property
    def count(self) -> int:
        return self._metrics.count

    @property
    def total_weight(self) -> float:
        return self._metrics.total_weight

    def empty(self) -> WeightedAverage:
        return WeightedAverage(
            arrays_key=self.arrays_key,
            metrics_key=self.metrics_key,
            weight_key=self.weight_key,
            spec=self.spec,
            precision=self.precision,
        )

    def add(self, content: RecordDict, node_id: int) -> None:
        metrics = self._metrics.read(content)
        if self.arrays_key is not None:
            arrays = reply_arrays(content, self.arrays_key)
            spec = self.spec if self.spec is not None else array_spec(arrays)
            check_layout(arrays, spec, self.arrays_key)
            self._fold_arrays(arrays, metrics.weight)
            # Only a reply that passed every check may fix the layout of later ones.
            self.spec = spec
        self._metrics.fold(metrics)

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
            raise non_finite(list(arrays)[i])

    def merge(self, other: WeightedAverage) -> None:
        if other.count == 0:
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
        self._metrics.merge(other._metrics)

    def arrays(self) -> ArrayRecord | None:
        """The weighted mean of the arrays; None when no reply carried weight.

        Raises
        ------
        AggregationError
            If arrays were folded but their weights sum to zero.
        """
        if self._sums is None or self.spec is None:
            return None
        weight = self._metrics.total_weight
        if weight <= 0:
            raise AggregationError("replies' weights sum to zero: nothing to average")
        return ArrayRecord(
            (name, cast_mean(acc, weight, np.dtype(dtype)).reshape(shape))
            for (name, shape, dtype), acc in zip(self.spec, self._sums)
        )

    def metrics(self) -> MetricRecord:
        """Weighted means of the numeric metrics, plus the total weight."""
        return self._metrics.metrics()
