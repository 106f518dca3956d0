"""SCAFFOLD (Karimireddy et al., 2020): control variates correct the nodes' drift.

Server: global arrays ``x`` and server control ``c``. A round sends both; each sampled node
``i`` trains with the corrected step ``y -= lr * (grad - c_i + c)``, then updates its own
control (option II of the paper) ``c_i+ = c_i - c + (x - y) / (K * lr)`` for K local steps,
and replies with ``y`` and ``delta_c = c_i+ - c_i``. The server sets

    x <- x + eta_g * mean_i(y_i - x)
    c <- c + sum_i(delta_c_i) / N

with N the number of nodes in the federation. Both sums fold reply by reply
(:class:`ScaffoldAggregator`, O(model) memory). The node's ``c_i`` lives in its
``context.state``; :func:`load_control` and :func:`store_control` read and write it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from ..core._errors import AggregationError, ConfigError
from ..server import Grid, Reduction
from ._casting import to_dtype
from ._fedavg import FedAvg
from ._kernels import all_finite
from ._strategy import RoundPlan, Strategy
from ._weighted import WeightedAverage, array_spec

__all__ = [
    "CONTROL_DELTA_KEY",
    "CONTROL_KEY",
    "Scaffold",
    "ScaffoldAggregator",
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
    """Unweighted float64 sum of the ArrayRecords under one key."""

    def __init__(self, key: str, like: ArrayRecord) -> None:
        self.key = key
        self.spec = array_spec(like)
        self.sums: list[np.ndarray[Any, Any]] | None = None

    def check(self, content: RecordDict) -> ArrayRecord:
        arrays = content.get(self.key)
        if not isinstance(arrays, ArrayRecord):
            raise AggregationError(f"reply has no ArrayRecord {self.key!r}")
        if array_spec(arrays) != self.spec:
            raise AggregationError(
                f"{self.key!r} has layout {array_spec(arrays)}, expected {self.spec}"
            )
        for name, a in arrays.items():
            if not all_finite(a):
                raise AggregationError(f"array {name!r} of {self.key!r} holds NaN or infinity")
        return arrays

    def fold(self, arrays: ArrayRecord) -> None:
        if self.sums is None:
            self.sums = [
                np.zeros(a.size, dtype=np.complex128 if a.dtype.kind == "c" else np.float64)
                for a in arrays.values()
            ]
        for acc, a in zip(self.sums, arrays.values()):
            np.add(acc, a.reshape(-1), out=acc)

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
    ) -> None:
        self._global_arrays = global_arrays
        self._control = control
        self.arrays_key = arrays_key
        self.control_delta_key = control_delta_key
        self.metrics_key = metrics_key
        self.weight_key = weight_key
        self._arrays = _ArraySum(arrays_key, global_arrays)
        self._deltas = _ArraySum(control_delta_key, control)
        self._metrics = WeightedAverage(
            arrays_key=None, metrics_key=metrics_key, weight_key=weight_key
        )

    @property
    def count(self) -> int:
        return self._metrics.count

    def empty(self) -> ScaffoldAggregator:
        return ScaffoldAggregator(
            self._global_arrays,
            self._control,
            arrays_key=self.arrays_key,
            control_delta_key=self.control_delta_key,
            metrics_key=self.metrics_key,
            weight_key=self.weight_key,
        )

    def add(self, content: RecordDict, node_id: int) -> None:
        arrays = self._arrays.check(content)
        deltas = self._deltas.check(content)
        self._metrics.add(content, node_id)
        self._arrays.fold(arrays)
        self._deltas.fold(deltas)

    def merge(self, other: ScaffoldAggregator) -> None:
        if other.count == 0:
            return
        self._metrics.merge(other._metrics)
        self._arrays.merge(other._arrays)
        self._deltas.merge(other._deltas)

    def sums(self) -> tuple[list[np.ndarray[Any, Any]], list[np.ndarray[Any, Any]]] | None:
        """Flat float64 ``sum(y_i)`` and ``sum(delta_c_i)``; None if nothing was folded."""
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
    num_nodes: int,
    learning_rate: float,
) -> tuple[list[np.ndarray[Any, Any]], list[np.ndarray[Any, Any]]]:
    """The server step as a pure kernel over float64 arrays:
    ``x + lr * (sum_y / count - x)`` and ``c + sum_delta_c / num_nodes``."""
    new_x = [x + learning_rate * (s / count - x) for x, s in zip(arrays, sum_arrays)]
    new_c = [c + s / num_nodes for c, s in zip(control, sum_deltas)]
    return new_x, new_c


def _cast(values: list[np.ndarray[Any, Any]], like: ArrayRecord) -> ArrayRecord:
    return ArrayRecord(
        (name, to_dtype(v, a.dtype).reshape(a.shape)) for (name, a), v in zip(like.items(), values)
    )


class Scaffold(Strategy):
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
    control_key, control_delta_key
        Names of the control records in messages and replies.
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If ``server_learning_rate`` is not positive or ``num_nodes`` is below 1.
    """

    def __init__(
        self,
        *,
        server_learning_rate: float = 1.0,
        num_nodes: int | None = None,
        control_key: str = CONTROL_KEY,
        control_delta_key: str = CONTROL_DELTA_KEY,
        **options: Any,
    ) -> None:
        if not server_learning_rate > 0:
            raise ConfigError(f"server_learning_rate must be > 0, got {server_learning_rate}")
        if num_nodes is not None and num_nodes < 1:
            raise ConfigError(f"num_nodes must be >= 1, got {num_nodes}")
        self.base = FedAvg(**options)
        self.server_learning_rate = server_learning_rate
        self.num_nodes = num_nodes
        self.control_key = control_key
        self.control_delta_key = control_delta_key
        self.control: ArrayRecord | None = None
        self._federation_size = num_nodes or 1

    def _control_for(self, arrays: ArrayRecord) -> ArrayRecord:
        zeros = ArrayRecord((n, np.zeros(a.shape, np.float64)) for n, a in arrays.items())
        if self.control is None:
            self.control = zeros
        elif array_spec(self.control) != array_spec(zeros):
            raise ConfigError("the server control does not match the global arrays' layout")
        return self.control

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        control = self._control_for(arrays)
        plan = self.base.configure_train(server_round, arrays, config, grid)
        self._federation_size = self.num_nodes or max(len(grid.node_ids()), 1)
        content = RecordDict(
            {self.base.arrays_key: arrays, self.control_key: control, self.base.config_key: config}
        )
        messages = [
            Message(
                content,
                dst_node_id=m.metadata.dst_node_id,
                message_type=MessageType.TRAIN,
                group_id=str(server_round),
            )
            for m in plan.messages
        ]
        aggregator = ScaffoldAggregator(
            arrays,
            control,
            arrays_key=self.base.arrays_key,
            control_delta_key=self.control_delta_key,
            metrics_key=self.base.metrics_key,
            weight_key=self.base.weight_key,
        )
        return RoundPlan(messages, aggregator)

    def aggregate_train(
        self, server_round: int, reduction: Reduction[Any], arrays: ArrayRecord
    ) -> tuple[ArrayRecord, MetricRecord]:
        aggregator: ScaffoldAggregator = reduction.aggregator
        sums = aggregator.sums()
        if aggregator.count < max(self.base.min_train_replies, 1) or sums is None:
            return arrays, MetricRecord()
        control = self._control_for(arrays)
        new_x, new_c = scaffold_server_update(
            [np.asarray(a, np.float64).reshape(-1) for a in arrays.values()],
            [np.asarray(c).reshape(-1) for c in control.values()],
            sums[0],
            sums[1],
            aggregator.count,
            self._federation_size,
            self.server_learning_rate,
        )
        self.control = _cast(new_c, control)
        return _cast(new_x, arrays), aggregator.metrics()

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        return self.base.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, reduction: Reduction[Any]) -> MetricRecord:
        return self.base.aggregate_evaluate(server_round, reduction)

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
