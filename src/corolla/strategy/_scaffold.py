"""SCAFFOLD (Karimireddy et al., 2020): control variates correct the nodes' drift.

Server: global arrays ``x`` and server control ``c``. A round sends both; each sampled node
``i`` trains with the corrected step ``y -= lr * (grad - c_i + c)``, then updates its own
control (option II of the paper) ``c_i+ = c_i - c + (x - y) / (K * lr)`` for K local steps,
and replies with ``y`` and ``delta_c = c_i+ - c_i``. Over the sampled nodes S the server
sets (Algorithm 1 of the paper)

    x <- x + eta_g * mean_S(y_i - x)
    c <- c + |S| / N * mean_S(delta_c_i)      (= c + sum_S(delta_c_i) / N)

with N the number of nodes in the federation, which keeps ``c`` the mean of all the nodes'
``c_i``. The weighted variant (``Scaffold(weighted=True)``, FLamby's) targets the objective
``sum_i p_i f_i`` with ``p_i = n_i / sum_j n_j``, ``n_i`` a node's ``num-examples``: both
means become means weighted by ``n_i`` over S,

    x <- x + eta_g * (sum_S(n_i y_i) / sum_S(n_i) - x)
    c <- c + |S| / N * sum_S(n_i delta_c_i) / sum_S(n_i)

When every node replies (S is the federation) this keeps ``c = sum_i p_i c_i`` exactly;
under sampling, ``N * mean_S(n_i)`` stands in for the federation's total ``sum_i n_i``,
which the server does not know. Both sums fold reply by reply
(:class:`ScaffoldAggregator`, O(model) memory). The node's ``c_i`` lives in its
``context.state``; :func:`load_control` and :func:`store_control` read and write it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import (
    AggregationError,
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Context,
    MetricRecord,
    RecordDict,
)
from ..server import Grid
from ._casting import to_dtype
from ._composed import ComposedStrategy, Setting
from ._metrics import WeightedMetrics
from ._replies import RecordNames, array_spec, check_finite, reply_arrays
from ._training import Training

__all__ = [
    "CONTROL_DELTA_KEY",
    "CONTROL_KEY",
    "Scaffold",
    "ScaffoldAggregator",
    "ScaffoldTraining",
    "corrected_gradient",
    "load_control",
    "store_control",
    "update_control",
]

#: Record carrying the server control ``c`` in train messages.
CONTROL_KEY = "control"
#: Record carrying ``delta_c`` in train replies.
CONTROL_DELTA_KEY = "control-delta"


class _ArraySum:
    """Weighted float64 sum of the ArrayRecords under one key."""

    def __init__(self, key: str, like: ArrayRecord) -> None:
        self.key = key
        self.spec = array_spec(like)
        self.sums: list[np.ndarray[Any, Any]] | None = None

    def check(self, content: RecordDict) -> ArrayRecord:
        arrays = reply_arrays(content, self.key, self.spec)
        check_finite(arrays)
        return arrays

    def fold(self, arrays: ArrayRecord, weight: float = 1.0) -> None:
        if self.sums is None:
            self.sums = [
                np.zeros(a.size, dtype=np.complex128 if a.dtype.kind == "c" else np.float64)
                for a in arrays.values()
            ]
        for acc, a in zip(self.sums, arrays.values()):
            flat = a.reshape(-1)
            if weight == 1.0:
                np.add(acc, flat, out=acc)
            else:
                # The product in the accumulator's precision: float32 arrays times integer
                # weights are exact in float64.
                np.add(acc, np.multiply(flat, weight, dtype=acc.dtype), out=acc)

    def merge(self, other: _ArraySum) -> None:
        if other.sums is None:
            return
        if self.sums is None:
            self.sums = [s.copy() for s in other.sums]
        else:
            for mine, theirs in zip(self.sums, other.sums):
                np.add(mine, theirs, out=mine)


class ScaffoldAggregator:
    """Mergeable sums of the replies' arrays ``y_i`` and control deltas, plus metrics.

    Parameters
    ----------
    global_arrays, control
        ``x`` and ``c`` of the round: the layouts replies must match.
    weighted
        Sum ``n_i y_i`` and ``n_i delta_c_i``, ``n_i`` being the reply's ``weight_key``
        metric, instead of ``y_i`` and ``delta_c_i``.
    """

    def __init__(
        self,
        global_arrays: ArrayRecord,
        control: ArrayRecord,
        *,
        arrays_key: str = "arrays",
        control_delta_key: str = CONTROL_DELTA_KEY,
        metrics_key: str = "metrics",
        weight_key: str = "num-examples",
        weighted: bool = False,
    ) -> None:
        self._global_arrays = global_arrays
        self._control = control
        self.arrays_key = arrays_key
        self.control_delta_key = control_delta_key
        self.metrics_key = metrics_key
        self.weight_key = weight_key
        self.weighted = weighted
        self._arrays = _ArraySum(arrays_key, global_arrays)
        self._deltas = _ArraySum(control_delta_key, control)
        self._metrics = WeightedMetrics(metrics_key=metrics_key, weight_key=weight_key)

    @property
    def count(self) -> int:
        return self._metrics.count

    @property
    def weight_sum(self) -> float:
        """The sum of the weights the arrays were folded with: ``sum(n_i)`` when weighted,
        else the number of replies."""
        return self._metrics.total_weight if self.weighted else float(self.count)

    def empty(self) -> ScaffoldAggregator:
        return ScaffoldAggregator(
            self._global_arrays,
            self._control,
            arrays_key=self.arrays_key,
            control_delta_key=self.control_delta_key,
            metrics_key=self.metrics_key,
            weight_key=self.weight_key,
            weighted=self.weighted,
        )

    def add(self, content: RecordDict, node_id: int) -> None:
        arrays = self._arrays.check(content)
        deltas = self._deltas.check(content)
        metrics = self._metrics.read(content)
        self._metrics.fold(metrics)
        weight = metrics.weight if self.weighted else 1.0
        self._arrays.fold(arrays, weight)
        self._deltas.fold(deltas, weight)

    def merge(self, other: ScaffoldAggregator) -> None:
        if other.count == 0:
            return
        if other.weighted != self.weighted:
            raise AggregationError("cannot merge weighted and unweighted SCAFFOLD sums")
        self._metrics.merge(other._metrics)
        self._arrays.merge(other._arrays)
        self._deltas.merge(other._deltas)

    def sums(self) -> tuple[list[np.ndarray[Any, Any]], list[np.ndarray[Any, Any]]] | None:
        """Flat float64 ``sum(w_i y_i)`` and ``sum(w_i delta_c_i)``, ``w_i`` being ``n_i``
        when weighted and 1 otherwise; None if nothing was folded."""
        if self._arrays.sums is None or self._deltas.sums is None:
            return None
        return self._arrays.sums, self._deltas.sums

    def metrics(self) -> MetricRecord:
        """Weighted means of the replies' numeric metrics, plus the total weight."""
        return self._metrics.metrics()


def scaffold_server_update(
    arrays: list[np.ndarray[Any, Any]],
    control: list[np.ndarray[Any, Any]],
    sum_arrays: list[np.ndarray[Any, Any]],
    sum_deltas: list[np.ndarray[Any, Any]],
    count: int,
    weight_sum: float,
    num_nodes: int,
    learning_rate: float,
) -> tuple[list[np.ndarray[Any, Any]], list[np.ndarray[Any, Any]]]:
    """The server step as a pure kernel over float64 arrays.

    ``sum_arrays = sum_S(w_i y_i)`` and ``sum_deltas = sum_S(w_i delta_c_i)`` over the
    ``count = |S|`` replies, ``weight_sum = sum_S(w_i)``. Returns
    ``x + lr * (sum_arrays / weight_sum - x)`` and
    ``c + |S| / num_nodes * sum_deltas / weight_sum``. With unit weights
    (``weight_sum == count``) that is the paper's ``c + sum_S(delta_c_i) / num_nodes``.
    """
    new_x = [x + learning_rate * (s / weight_sum - x) for x, s in zip(arrays, sum_arrays)]
    # One division by N * W / |S|, which is exactly N for unit weights: the unweighted
    # step divides by N as the paper's sum / N does, with no extra rounding.
    scale = num_nodes * weight_sum / count
    new_c = [c + s / scale for c, s in zip(control, sum_deltas)]
    return new_x, new_c


def _cast(values: list[np.ndarray[Any, Any]], like: ArrayRecord) -> ArrayRecord:
    return ArrayRecord(
        (name, to_dtype(v, a.dtype).reshape(a.shape)) for (name, a), v in zip(like.items(), values)
    )


class ScaffoldTraining(Training):
    """SCAFFOLD's training: messages carry the server control besides the arrays, replies
    fold into a :class:`ScaffoldAggregator`, and the server step updates both the global
    arrays and the control, which the part keeps across rounds.

    Parameters
    ----------
    server_learning_rate, num_nodes, control_key, control_delta_key, weighted
        As :class:`Scaffold`'s.

    Raises
    ------
    ConfigError
        If ``server_learning_rate`` is not positive or ``num_nodes`` is below 1.
    """

    def __init__(
        self,
        *,
        server_learning_rate: float,
        num_nodes: int | None,
        control_key: str,
        control_delta_key: str,
        weighted: bool,
    ) -> None:
        if not server_learning_rate > 0:
            raise ConfigError(f"server_learning_rate must be > 0, got {server_learning_rate}")
        if num_nodes is not None and num_nodes < 1:
            raise ConfigError(f"num_nodes must be >= 1, got {num_nodes}")
        self.server_learning_rate = server_learning_rate
        self.num_nodes = num_nodes
        self.control_key = control_key
        self.control_delta_key = control_delta_key
        self.weighted = weighted
        #: The server control ``c`` (None before the first round).
        self.control: ArrayRecord | None = None
        self._federation_size = num_nodes or 1

    @property
    def state_keys(self) -> tuple[str, ...]:
        return (self.control_key,)

    def _control_for(self, arrays: ArrayRecord) -> ArrayRecord:
        zeros = ArrayRecord((n, np.zeros(a.shape, np.float64)) for n, a in arrays.items())
        if self.control is None:
            self.control = zeros
        elif array_spec(self.control) != array_spec(zeros):
            raise ConfigError("the server control does not match the global arrays' layout")
        return self.control

    def content(
        self, arrays: ArrayRecord, config: ConfigRecord, records: RecordNames
    ) -> RecordDict:
        return RecordDict(
            {
                records.arrays_key: arrays,
                self.control_key: self._control_for(arrays),
                records.config_key: config,
            }
        )

    def aggregator(
        self, arrays: ArrayRecord, records: RecordNames, grid: Grid
    ) -> ScaffoldAggregator:
        self._federation_size = self.num_nodes or max(len(grid.node_ids()), 1)
        return ScaffoldAggregator(
            arrays,
            self._control_for(arrays),
            arrays_key=records.arrays_key,
            control_delta_key=self.control_delta_key,
            metrics_key=records.metrics_key,
            weight_key=records.weight_key,
            weighted=self.weighted,
        )

    def result(self, aggregator: ScaffoldAggregator, arrays: ArrayRecord) -> ArrayRecord | None:
        sums = aggregator.sums()
        if sums is None or not aggregator.weight_sum > 0:
            # Every reply weighed zero (nodes with no data): no weighted mean to take, so
            # the round keeps x and c, as FedAvg keeps its arrays.
            return None
        control = self._control_for(arrays)
        new_x, new_c = scaffold_server_update(
            [np.asarray(a, np.float64).reshape(-1) for a in arrays.values()],
            [np.asarray(c).reshape(-1) for c in control.values()],
            sums[0],
            sums[1],
            aggregator.count,
            aggregator.weight_sum,
            self._federation_size,
            self.server_learning_rate,
        )
        self.control = _cast(new_c, control)
        return _cast(new_x, arrays)

    def state_dict(self) -> RecordDict:
        """The server control (empty before the first round)."""
        if self.control is None:
            return RecordDict()
        return RecordDict({self.control_key: self.control})

    def load_state_dict(self, state: RecordDict) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises
        ------
        ConfigError
            If ``state`` holds anything but the control ArrayRecord.
        """
        unexpected = [k for k in state if k != self.control_key]
        control = state.get(self.control_key)
        if unexpected or (control is not None and not isinstance(control, ArrayRecord)):
            raise ConfigError(f"unexpected SCAFFOLD state {list(state)}")
        self.control = control


class Scaffold(ComposedStrategy):
    """SCAFFOLD's server: FedAvg's sampling, plus a server control sent with each round.

    Train messages carry the global arrays, the server control (under ``control_key``,
    float64, shaped like the arrays) and the config. Replies must carry the updated arrays,
    the control delta (under ``control_delta_key``) and metrics with ``num-examples``.

    Parameters
    ----------
    server_learning_rate
        ``eta_g``; 1 (the default) sets ``x`` to the mean of the ``y_i``.
    num_nodes
        ``N`` in the control update; by default the number of nodes available when the
        round starts.
    weighted
        False (the default, the paper's): ``x`` moves to the plain mean of the ``y_i`` and
        ``c`` by ``sum(delta_c_i) / N``. True (FLamby's): both means are weighted by the
        replies' ``num-examples`` ``n_i``: ``x`` moves to ``sum(n_i y_i) / sum(n_i)`` and
        ``c`` by ``|S| / N * sum(n_i delta_c_i) / sum(n_i)``, which keeps ``c`` the
        ``n_i``-weighted mean of the nodes' controls when every node replies. A round whose
        replies all weigh zero then keeps ``x`` and ``c``.
    control_key, control_delta_key
        Names of the control records in messages and replies.
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If ``server_learning_rate`` is not positive or ``num_nodes`` is below 1.
    """

    server_learning_rate: Setting[float] = Setting("_training")
    num_nodes: Setting[int | None] = Setting("_training")
    control_key: Setting[str] = Setting("_training")
    control_delta_key: Setting[str] = Setting("_training")
    weighted: Setting[bool] = Setting("_training")
    #: The server control ``c`` (None before the first round).
    control: Setting[ArrayRecord | None] = Setting("_training")

    def __init__(
        self,
        *,
        server_learning_rate: float = 1.0,
        num_nodes: int | None = None,
        control_key: str = CONTROL_KEY,
        control_delta_key: str = CONTROL_DELTA_KEY,
        weighted: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._training = ScaffoldTraining(
            server_learning_rate=server_learning_rate,
            num_nodes=num_nodes,
            control_key=control_key,
            control_delta_key=control_delta_key,
            weighted=weighted,
        )


# Client side


def load_control(context: Context, like: ArrayRecord, key: str = "scaffold-control") -> ArrayRecord:
    """The node's control ``c_i`` from ``context.state`` (zeros shaped like ``like`` the
    first time)."""
    stored = context.state.get(key)
    if isinstance(stored, ArrayRecord):
        return stored
    return ArrayRecord((n, np.zeros(a.shape, np.float64)) for n, a in like.items())


def store_control(context: Context, control: ArrayRecord, key: str = "scaffold-control") -> None:
    """Keep ``c_i`` in ``context.state`` for the node's next round."""
    context.state = context.state | {key: control}


def corrected_gradient(
    gradient: dict[str, np.ndarray[Any, Any]],
    control: ArrayRecord,
    local_control: ArrayRecord,
) -> dict[str, np.ndarray[Any, Any]]:
    """SCAFFOLD's corrected gradient ``grad - c_i + c``, per array, in the gradient's dtype.

    Raises
    ------
    ConfigError
        If the names differ.
    """
    if list(gradient) != list(control) or list(control) != list(local_control):
        raise ConfigError("gradient and controls must have the same array names")
    return {
        name: (g - local_control[name] + control[name]).astype(g.dtype, copy=False)
        for name, g in gradient.items()
    }


def update_control(
    global_arrays: ArrayRecord,
    local_arrays: ArrayRecord,
    control: ArrayRecord,
    local_control: ArrayRecord,
    num_steps: int,
    learning_rate: float,
) -> tuple[ArrayRecord, ArrayRecord]:
    """Option II of the paper: ``c_i+ = c_i - c + (x - y_i) / (K * lr)``.

    Returns ``(c_i+, delta_c)`` in float64, ``delta_c = c_i+ - c_i`` being what the node
    sends back under ``control-delta``.

    Raises
    ------
    ConfigError
        If ``num_steps`` or ``learning_rate`` is not positive.
    """
    if num_steps < 1 or not learning_rate > 0:
        raise ConfigError("num_steps and learning_rate must be positive")
    scale = 1.0 / (num_steps * learning_rate)
    new: dict[str, np.ndarray[Any, Any]] = {}
    delta: dict[str, np.ndarray[Any, Any]] = {}
    for name, x in global_arrays.items():
        ci = np.asarray(local_control[name], np.float64)
        drift = np.asarray(x, np.float64) - np.asarray(local_arrays[name], np.float64)
        new[name] = ci - np.asarray(control[name], np.float64) + scale * drift
        delta[name] = new[name] - ci
    return ArrayRecord(new), ArrayRecord(delta)
