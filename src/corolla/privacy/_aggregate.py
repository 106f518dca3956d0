"""The aggregator of central DP: the sum of the nodes' clipped updates, mergeable.

An update is a reply's arrays minus the round's global arrays. :class:`ClippedSum` clips
each update to the round's clipping norm C (``clipping="server"``), or checks that the
node clipped it (``clipping="client"``, with :func:`~corolla.privacy.clipping_mod`), and
sums the clipped updates with equal weights: a weight would scale one node's update, and
with it the bound C on what one node can change, so the weighted mean of FedAvg is not
used. It also counts the updates that were within C, which adaptive clipping needs.

Memory is O(model) whatever the number of replies, and partial sums merge: the runtime
folds replies where it is cheapest, as for FedAvg. The noise is added once, to the total
(:class:`~corolla.privacy.CentralDP`), never here.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from ..core import AggregationError, ArrayRecord, ConfigError, MetricRecord, RecordDict
from ..strategy import WeightedMetrics, array_spec, check_layout, reply_arrays
from ._clipping import check_clipping_norm, clip_in_place, l2_norm
from ._mods import UNCLIPPED_KEY

__all__ = ["CLIPPINGS", "ClippedSum", "NoisedSum"]

#: Where updates are clipped.
CLIPPINGS = ("server", "client")

#: Updates clipped on a node reach the server rounded to the reply's dtype; a norm this
#: far above C (relative) is still taken as clipped, on top of that rounding.
_RELATIVE_TOLERANCE = 1e-6


class ClippedSum:
    """The equal-weight sum of the replies' updates clipped to ``clipping_norm``.

    Parameters
    ----------
    global_arrays
        The arrays the round's nodes started from; an update is a reply's arrays minus
        these (names, shapes and dtypes must match).
    clipping_norm
        C, the bound on each update's L2 norm (over all its arrays).
    clipping
        ``"server"``: each update is clipped here. ``"client"``: the node clipped it (its
        reply says whether it was within C under ``dp-unclipped``); an update longer than
        C (beyond the rounding of the reply's dtype) is refused, and the rest clipped
        again here against that rounding.
    arrays_key, metrics_key, weight_key
        Names of the records in replies. Metrics are averaged as FedAvg averages them,
        weighted by ``weight_key``; ``dp-unclipped`` is left out of them (only its noised
        sum is released).

    Raises
    ------
    ConfigError
        If ``clipping_norm`` is not positive, ``clipping`` is unknown, or an array is
        complex (the norm and the noise are those of real vectors).
    """

    def __init__(
        self,
        global_arrays: ArrayRecord,
        clipping_norm: float,
        *,
        clipping: str = "server",
        arrays_key: str = "arrays",
        metrics_key: str = "metrics",
        weight_key: str = "num-examples",
    ) -> None:
        if clipping not in CLIPPINGS:
            raise ConfigError(f"clipping must be one of {CLIPPINGS}, got {clipping!r}")
        complex_arrays = [n for n, a in global_arrays.items() if a.dtype.kind == "c"]
        if complex_arrays:
            raise ConfigError(
                f"central DP clips and noises real arrays; {complex_arrays} are complex"
            )
        #: None in a partial sum shipped back from a worker (see ``__getstate__``).
        self.global_arrays: ArrayRecord | None = global_arrays
        self.clipping_norm = check_clipping_norm(clipping_norm)
        self.clipping = clipping
        self.arrays_key = arrays_key
        self.spec = array_spec(global_arrays)
        self._metrics = WeightedMetrics(metrics_key=metrics_key, weight_key=weight_key)
        self._sums: list[np.ndarray[Any, Any]] | None = None
        self._workspace: list[np.ndarray[Any, Any]] | None = None
        self._starts64: list[np.ndarray[Any, Any]] | None = None
        #: The number of updates folded in that were within C.
        self.unclipped = 0

    def __getstate__(self) -> dict[str, Any]:
        # A partial sum that folded replies travels only to be merged: the global arrays
        # it started from are the root's already, and would double what it ships.
        # An empty copy sent to a worker takes the global arrays in float64 along, cast
        # once for every task of the round rather than once in each.
        state = dict(self.__dict__)
        if self.count:
            state["global_arrays"] = None
            state["_starts64"] = None
        return state

    def workspace_layout(self) -> list[tuple[int, np.dtype[Any]]] | None:
        """Sizes and dtypes of the sums the first reply will fill (None once they exist):
        a simulation worker then folds into shared memory its partial sum goes back
        through without a copy."""
        if self._sums is not None:
            return None
        return [(math.prod(shape), np.dtype(np.float64)) for _, shape, _ in self.spec]

    def use_workspace(self, arrays: list[np.ndarray[Any, Any]]) -> None:
        """Sum into ``arrays`` (of :meth:`workspace_layout`) rather than new memory."""
        self._workspace = arrays

    @property
    def count(self) -> int:
        return self._metrics.count

    @property
    def metrics_key(self) -> str:
        return self._metrics.metrics_key

    @property
    def weight_key(self) -> str:
        return self._metrics.weight_key

    def empty(self) -> ClippedSum:
        if self.global_arrays is None:
            raise AggregationError("a partial sum shipped back has no global arrays to start from")
        empty = ClippedSum(
            self.global_arrays,
            self.clipping_norm,
            clipping=self.clipping,
            arrays_key=self.arrays_key,
            metrics_key=self._metrics.metrics_key,
            weight_key=self._metrics.weight_key,
        )
        # Every task's copy starts from the same arrays: cast them once.
        empty._starts64 = self._starts(self.global_arrays)
        return empty

    def add(self, content: RecordDict, node_id: int) -> None:
        starts = self.global_arrays
        if starts is None:
            raise AggregationError("a partial sum shipped back can be merged, not folded into")
        metrics, reported = self._read_metrics(content)
        arrays = reply_arrays(content, self.arrays_key)
        check_layout(arrays, self.spec, self.arrays_key)
        first = self._sums is None
        workspace = self._workspace
        # The update is formed in float64 where it will stay: the first straight into the
        # sums (the worker's shared workspace, when there is one), later ones into this
        # thread's scratch arrays (fresh memory for each reply costs more than the
        # arithmetic).
        clipped = self._first_buffers() if first else self._scratch_buffers()
        try:
            for target, name, start in zip(clipped, starts, self._starts(starts), strict=True):
                # A cast, then a subtraction of one dtype: faster than one of two dtypes.
                np.copyto(target, arrays[name], casting="unsafe")
                np.subtract(target, start, out=target)
            try:
                norm, within = clip_in_place(clipped, self.clipping_norm)
            except ConfigError as exc:
                raise AggregationError(
                    f"the update of node {node_id} holds NaN or infinity"
                ) from exc
            if self.clipping == "client":
                self._check_clipped(arrays, norm, node_id)
        except AggregationError:
            if first:  # the refused update is not the start of the sums
                self._sums, self._workspace = None, workspace
            raise
        if self.clipping == "client" and reported is not None:
            within = reported
        if not first:
            for total, part in zip(self._sums, clipped, strict=True):  # type: ignore[arg-type]
                np.add(total, part, out=total)
        self.unclipped += int(within)
        self._metrics.fold(metrics)

    def _first_buffers(self) -> list[np.ndarray[Any, Any]]:
        """The sums' arrays, filled by the first reply."""
        if self._workspace is not None:
            self._sums = [w.reshape(shape) for w, (_, shape, _) in zip(self._workspace, self.spec)]
            self._workspace = None
        else:
            self._sums = [np.empty(shape, np.float64) for _, shape, _ in self.spec]
        return self._sums

    def _scratch_buffers(self) -> list[np.ndarray[Any, Any]]:
        # The calling thread's, asked for at each reply: replies may be folded on
        # different threads.
        return _scratch_for([shape for _, shape, _ in self.spec])

    def _starts(self, starts: ArrayRecord) -> list[np.ndarray[Any, Any]]:
        """The global arrays in float64, made once for every aggregator that starts from
        them (an empty copy shares them, in a worker too): subtracting arrays of one
        dtype is several times faster than of two."""
        if self._starts64 is None:
            self._starts64 = [np.asarray(a, dtype=np.float64) for a in starts.values()]
        return self._starts64

    def _read_metrics(self, content: RecordDict) -> tuple[Any, bool | None]:
        """The reply's metrics without ``dp-unclipped``, and that bit (None if absent)."""
        key = self._metrics.metrics_key
        record = content.get(key)
        if not isinstance(record, MetricRecord) or UNCLIPPED_KEY not in record:
            return self._metrics.read(content), None
        bit = record[UNCLIPPED_KEY]
        if bit not in (0, 1):
            raise AggregationError(f"metric {UNCLIPPED_KEY!r} must be 0 or 1, got {bit!r}")
        rest = MetricRecord({k: v for k, v in record.items() if k != UNCLIPPED_KEY})
        return self._metrics.read(RecordDict({key: rest})), bool(bit)

    def _check_clipped(self, arrays: ArrayRecord, norm: float, node_id: int) -> None:
        # The node's clipped update was added to the global arrays and rounded to the
        # reply's dtype: allow at most half a unit in the last place per element.
        rounding = 0.5 * l2_norm([np.spacing(np.abs(a)) for a in arrays.values()])
        allowed = self.clipping_norm * (1.0 + _RELATIVE_TOLERANCE) + rounding
        if not norm <= allowed:
            raise AggregationError(
                f"the update of node {node_id} has L2 norm {norm:.6g}, above the clipping "
                f"norm {self.clipping_norm:.6g} it was sent: with client-side clipping "
                f"every ClientApp must clip (add corolla.privacy.clipping_mod to its mods)"
            )

    def merge(self, other: ClippedSum) -> None:
        if other.count == 0:
            return
        if other.spec != self.spec:
            raise AggregationError("cannot merge aggregates of different array layouts")
        if other._sums is not None:
            if self._sums is None:
                self._sums = [s.copy() for s in other._sums]
            else:
                for mine, theirs in zip(self._sums, other._sums, strict=True):
                    mine += theirs
        self.unclipped += other.unclipped
        self._metrics.merge(other._metrics)

    def sums(self) -> list[np.ndarray[Any, Any]]:
        """The sum of the clipped updates (float64, the arrays' shapes); zeros before any
        reply."""
        if self._sums is None:
            return [np.zeros(shape, np.float64) for _, shape, _ in self.spec]
        return self._sums

    def metrics(self) -> MetricRecord:
        """Weighted means of the replies' numeric metrics, as FedAvg reports them."""
        return self._metrics.metrics()


_THREAD = threading.local()

#: The most float64 elements of scratch a thread keeps between replies (128 MiB): replies
#: are folded on few threads (a simulation worker's, the ServerApp's), and a larger
#: update's arithmetic outweighs allocating its scratch anew.
_KEPT_SCRATCH_ELEMENTS = 1 << 24


def _scratch_for(shapes: list[tuple[int, ...]]) -> list[np.ndarray[Any, Any]]:
    """Float64 scratch arrays of ``shapes``, the same ones for every aggregator of this
    thread that asks for them: a worker folds one task's replies at a time, and fresh
    memory for each task costs more than the arithmetic."""
    kept: tuple[list[tuple[int, ...]], list[np.ndarray[Any, Any]]] | None = getattr(
        _THREAD, "scratch", None
    )
    if kept is not None and kept[0] == shapes:
        return kept[1]
    arrays = [np.empty(shape, np.float64) for shape in shapes]
    if sum(a.size for a in arrays) <= _KEPT_SCRATCH_ELEMENTS:
        _THREAD.scratch = (shapes, arrays)
    return arrays


class NoisedSum:
    """A sum of clipped updates that carries its noise already: each node added its share
    before secure aggregation summed them (:class:`~corolla.privacy.SecAggPlus` around
    :class:`~corolla.privacy.CentralDP`), so the server adds none.

    Parameters
    ----------
    count
        How many updates the sum holds.
    sums
        The sum of the clipped and noised updates (float64, the arrays' shapes).
    metrics
        The nodes' weighted mean metrics.
    noise_stddev
        The standard deviation of the noise on each element of the sum.
    """

    #: Whether each update was within C is not released under secure aggregation.
    unclipped = 0

    def __init__(
        self,
        count: int,
        sums: list[np.ndarray[Any, Any]],
        metrics: MetricRecord,
        noise_stddev: float,
    ) -> None:
        self.count = count
        self._sums = sums
        self._metrics = metrics
        self.noise_stddev = noise_stddev

    def sums(self) -> list[np.ndarray[Any, Any]]:
        return self._sums

    def metrics(self) -> MetricRecord:
        return self._metrics
