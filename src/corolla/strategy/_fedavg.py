"""FedAvg (McMahan et al., 2017): the weighted average of the nodes' updated arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import (
    AggregationError,
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from ..server import Grid, Reduction
from ._kernels import PRECISIONS
from ._selection import SelectionPolicy, UniformSelection, sample_size
from ._strategy import RoundPlan, Strategy
from ._weighted import WeightedAverage, array_spec

__all__ = ["FedAvg"]


class FedAvg(Strategy):
    """Federated Averaging.

    Each round samples ``fraction_train`` of the available nodes (at least
    ``min_train_nodes``), sends them the global arrays, and replaces the global arrays with
    the average of their updates weighted by ``num-examples``. Replies fold into a
    :class:`WeightedAverage` as they arrive: server memory is O(model).

    Parameters
    ----------
    fraction_train, fraction_evaluate
        Fractions of available nodes sampled for training and for evaluation (0 disables
        federated evaluation).
    min_train_nodes, min_evaluate_nodes
        Lower bounds on the number of nodes sampled.
    min_available_nodes
        Nodes that must be connected before a round starts.
    min_train_replies
        Successful replies needed to update the global arrays; with fewer, the round keeps
        the previous arrays and reports it.
    seed, rng
        Randomness of node sampling: an explicit generator, or a seed for a new one.
    selection
        The node selection policy (uniform by default).
    arrays_key, metrics_key, config_key, weight_key
        Names of the records in messages and replies.
    available_timeout
        Seconds to wait for ``min_available_nodes`` before a round (None: no limit).
    precision
        The accumulators' precision (:class:`WeightedAverage`): ``"float64"`` (default) or
        ``"native"`` (the updates' own dtype: half the memory, about twice the folding
        speed for float32 models, float32 rounding).

    Raises
    ------
    ConfigError
        If a fraction is outside its range or a minimum is negative.
    """

    def __init__(
        self,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        min_train_replies: int = 1,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        selection: SelectionPolicy | None = None,
        arrays_key: str = "arrays",
        metrics_key: str = "metrics",
        config_key: str = "config",
        weight_key: str = "num-examples",
        available_timeout: float | None = 600.0,
        precision: str = "float64",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(
                f"accumulator precision must be one of {PRECISIONS}, got {precision!r}"
            )
        if not 0.0 < fraction_train <= 1.0:
            raise ConfigError(f"fraction_train must be in (0, 1], got {fraction_train}")
        if not 0.0 <= fraction_evaluate <= 1.0:
            raise ConfigError(f"fraction_evaluate must be in [0, 1], got {fraction_evaluate}")
        for name, value in [
            ("min_train_nodes", min_train_nodes),
            ("min_evaluate_nodes", min_evaluate_nodes),
            ("min_available_nodes", min_available_nodes),
            ("min_train_replies", min_train_replies),
        ]:
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_train_nodes = min_train_nodes
        self.min_evaluate_nodes = min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.min_train_replies = min_train_replies
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.selection = selection if selection is not None else UniformSelection()
        self.arrays_key = arrays_key
        self.metrics_key = metrics_key
        self.config_key = config_key
        self.weight_key = weight_key
        self.available_timeout = available_timeout
        self.precision = precision
        # The last round's accumulators, reused by the next round's aggregate.
        self._workspace: list[np.ndarray[Any, Any]] | None = None

    def _sample(self, grid: Grid, fraction: float, min_nodes: int) -> list[int]:
        available = grid.wait_for_nodes(self.min_available_nodes, self.available_timeout)
        num = sample_size(len(available), fraction, min_nodes)
        return self.selection.select(available, num, self.rng)

    def _messages(
        self, nodes: list[int], content: RecordDict, message_type: str, server_round: int
    ) -> list[Message]:
        # One content object shared by every message: runtimes ship it once per round.
        return [
            Message(content, dst_node_id=n, message_type=message_type, group_id=str(server_round))
            for n in nodes
        ]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        nodes = self._sample(grid, self.fraction_train, self.min_train_nodes)
        content = RecordDict({self.arrays_key: arrays, self.config_key: config})
        aggregator = WeightedAverage(
            arrays_key=self.arrays_key,
            metrics_key=self.metrics_key,
            weight_key=self.weight_key,
            spec=array_spec(arrays),
            workspace=self._workspace,
            precision=self.precision,
        )
        self._workspace = None
        return RoundPlan(
            self._messages(nodes, content, MessageType.TRAIN, server_round), aggregator
        )

    def aggregate_train(
        self, server_round: int, reduction: Reduction[Any], arrays: ArrayRecord
    ) -> tuple[ArrayRecord, MetricRecord]:
        aggregator: WeightedAverage = reduction.aggregator
        if aggregator.count < max(self.min_train_replies, 1):
            # Too few updates: keep the global arrays; the history records the failures.
            return arrays, MetricRecord()
        try:
            new_arrays = aggregator.arrays()
        except AggregationError:
            # Every reply weighed zero (e.g. nodes with no data): there is no average to
            # take, so the round keeps the global arrays instead of ending the run.
            new_arrays = None
        metrics = aggregator.metrics()
        self._workspace = aggregator.take_workspace()
        return (new_arrays if new_arrays is not None else arrays), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        aggregator = WeightedAverage(
            arrays_key=None, metrics_key=self.metrics_key, weight_key=self.weight_key
        )
        if self.fraction_evaluate == 0.0:
            return RoundPlan([], aggregator)
        nodes = self._sample(grid, self.fraction_evaluate, self.min_evaluate_nodes)
        content = RecordDict({self.arrays_key: arrays, self.config_key: config})
        return RoundPlan(
            self._messages(nodes, content, MessageType.EVALUATE, server_round), aggregator
        )

    def aggregate_evaluate(self, server_round: int, reduction: Reduction[Any]) -> MetricRecord:
        aggregator: WeightedAverage = reduction.aggregator
        if aggregator.count == 0:
            return MetricRecord()
        return aggregator.metrics()
