"""Strategies assembled from parts, which every built-in strategy is.

A :class:`ComposedStrategy` runs the four hooks of :class:`Strategy` once for all, over
its parts:

- a :class:`NodeSampling`: which nodes train and evaluate each round, drawn from the
  strategy's one random generator;
- a :class:`RecordNames`: the names of the records in messages and replies;
- a :class:`Training`: what training messages carry, the aggregator their replies fold
  into and the new global arrays made from it (:class:`MeanTraining`, FedAvg's weighted
  average, unless a strategy brings its own);
- optionally a :class:`ServerOptimizer`, stepping from the global arrays towards the
  training's result (FedAvgM, FedAdagrad, FedAdam, FedYogi);
- settings sent with every training message (FedProx's ``proximal-mu``).

Federated evaluation is the same for every strategy: the sampled nodes evaluate the global
arrays and their metrics are averaged, weighted by ``num-examples``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar, cast, overload

import numpy as np

from ..core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from ..server import Grid, Reduction
from ._metrics import WeightedMetrics
from ._optimizers import ServerOptimizer
from ._replies import RecordNames
from ._selection import NodeSampling, SelectionPolicy, UniformSelection
from ._strategy import RoundPlan, Strategy
from ._training import MeanTraining, Training

__all__ = ["ComposedStrategy", "Setting"]

T = TypeVar("T")


class Setting(Generic[T]):
    """A strategy's setting that one of its parts keeps: reading or writing the strategy's
    attribute reads or writes the part's, so the two cannot disagree.

    Parameters
    ----------
    part
        The strategy attribute holding the part.
    name
        The part's attribute; by default the strategy attribute's own name.
    """

    def __init__(self, part: str, name: str | None = None) -> None:
        self._part = part
        self._name = name or ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = self._name or name

    @overload
    def __get__(self, instance: None, owner: type) -> Setting[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object | None, owner: type) -> Setting[T] | T:
        if instance is None:
            return self
        return cast(T, getattr(getattr(instance, self._part), self._name))

    def __set__(self, instance: object, value: T) -> None:
        setattr(getattr(instance, self._part), self._name, value)


class _Stateful(Protocol):
    """A part that keeps state across rounds, saved in a checkpoint."""

    @property
    def state_keys(self) -> tuple[str, ...]: ...

    def state_dict(self) -> RecordDict: ...

    def load_state_dict(self, state: RecordDict) -> None: ...


def _messages(
    content: RecordDict, nodes: Sequence[int], message_type: str, server_round: int
) -> list[Message]:
    # One content object shared by every message: runtimes ship it once per round.
    return [
        Message(content, dst_node_id=n, message_type=message_type, group_id=str(server_round))
        for n in nodes
    ]


class ComposedStrategy(Strategy):
    """A strategy assembled from parts (see the module's description).

    It takes FedAvg's options (see :class:`FedAvg`), from which it builds its sampling, its
    record names and a :class:`MeanTraining`; a strategy built on it replaces the parts
    that make it differ (``_training``, ``_optimizer``, ``_train_settings``) in its own
    constructor. Each option stays readable and writable as an attribute of the strategy,
    which reads and writes the part that keeps it.

    Raises
    ------
    ConfigError
        If a fraction is outside its range, a minimum is negative or ``precision`` unknown.
    """

    # Typed by annotations, which are not evaluated: ``Setting[np.random.Generator]`` as an
    # expression would load numpy.random into every process that imports corolla.
    fraction_train: Setting[float] = Setting("_sampling")
    fraction_evaluate: Setting[float] = Setting("_sampling")
    min_train_nodes: Setting[int] = Setting("_sampling")
    min_evaluate_nodes: Setting[int] = Setting("_sampling")
    min_available_nodes: Setting[int] = Setting("_sampling")
    available_timeout: Setting[float | None] = Setting("_sampling")
    selection: Setting[SelectionPolicy] = Setting("_sampling")
    rng: Setting[np.random.Generator] = Setting("_sampling")
    arrays_key: Setting[str] = Setting("_records")
    metrics_key: Setting[str] = Setting("_records")
    config_key: Setting[str] = Setting("_records")
    weight_key: Setting[str] = Setting("_records")

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
        if min_train_replies < 0:
            raise ConfigError(f"min_train_replies must be >= 0, got {min_train_replies}")
        self._training: Training = MeanTraining(precision)
        self._sampling = NodeSampling(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            available_timeout=available_timeout,
            selection=selection if selection is not None else UniformSelection(),
            rng=rng if rng is not None else np.random.default_rng(seed),
        )
        self._records = RecordNames(arrays_key, metrics_key, config_key, weight_key)
        self._optimizer: ServerOptimizer | None = None
        self._train_settings: dict[str, Any] = {}
        #: Successful replies needed to update the global arrays.
        self.min_train_replies = min_train_replies

    def generators(self) -> list[np.random.Generator]:
        return [self._sampling.rng]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        if self._train_settings:
            config = config | self._train_settings  # a copy: the caller's config is kept
        content = self._training.content(arrays, config, self._records)
        nodes = self._sampling.train_nodes(grid)
        aggregator = self._training.aggregator(arrays, self._records, grid)
        return RoundPlan(_messages(content, nodes, MessageType.TRAIN, server_round), aggregator)

    def aggregate_train(
        self, server_round: int, reduction: Reduction[Any], arrays: ArrayRecord
    ) -> tuple[ArrayRecord, MetricRecord]:
        aggregator = reduction.aggregator
        if aggregator.count < max(self.min_train_replies, 1):
            # Too few updates: keep the global arrays; the history records the failures.
            return arrays, MetricRecord()
        new_arrays = self._training.result(aggregator, arrays)
        metrics: MetricRecord = aggregator.metrics()
        if new_arrays is None:
            # No update this round (e.g. every reply weighed zero): the optimizer does not
            # step either.
            return arrays, metrics
        if self._optimizer is not None:
            new_arrays = self._optimizer.step(server_round, arrays, new_arrays)
        return new_arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        records = self._records
        aggregator = WeightedMetrics(metrics_key=records.metrics_key, weight_key=records.weight_key)
        nodes = self._sampling.evaluate_nodes(grid)
        content = RecordDict({records.arrays_key: arrays, records.config_key: config})
        return RoundPlan(_messages(content, nodes, MessageType.EVALUATE, server_round), aggregator)

    def aggregate_evaluate(self, server_round: int, reduction: Reduction[Any]) -> MetricRecord:
        aggregator: WeightedMetrics = reduction.aggregator
        if aggregator.count == 0:
            return MetricRecord()
        return aggregator.metrics()

    def _stateful_parts(self) -> list[_Stateful]:
        parts: list[_Stateful] = [self._training]
        if self._optimizer is not None:
            parts.append(self._optimizer)
        return [part for part in parts if part.state_keys]

    def state_dict(self) -> RecordDict:
        """The state of the strategy's parts across rounds (optimizer moments, control
        variates), for a checkpoint; empty before the first round and for strategies that
        keep none."""
        records: dict[str, Any] = {}
        for part in self._stateful_parts():
            records.update(part.state_dict())
        return RecordDict(records)

    def load_state_dict(self, state: RecordDict) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises
        ------
        ConfigError
            If ``state`` holds records this strategy does not keep, or of the wrong kind.
        """
        parts = self._stateful_parts()
        if not parts:
            super().load_state_dict(state)
            return
        kept = [key for part in parts for key in part.state_keys]
        unexpected = [key for key in state if key not in kept]
        if unexpected:
            raise ConfigError(
                f"unexpected state records {unexpected} for {type(self).__name__}; "
                f"expected ArrayRecords among {kept}"
            )
        for part in parts:
            part.load_state_dict(
                RecordDict((key, record) for key, record in state.items() if key in part.state_keys)
            )
