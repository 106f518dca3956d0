"""The training part of a strategy: what its training messages carry, the aggregator the
replies fold into, and the new global arrays made from that aggregate.

:class:`MeanTraining` (the weighted average of the updates) is FedAvg's, and the one most
strategies are assembled with; q-FedAvg, SCAFFOLD and the robust strategies bring their own.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from ..core import AggregationError, ArrayRecord, ConfigError, ConfigRecord, RecordDict
from ..server import Aggregator, Grid
from ._replies import RecordNames, array_spec
from ._weighted import WeightedAverage, check_precision

__all__ = ["MeanTraining", "Training"]


class Training(abc.ABC):
    """How a strategy trains: the content of its training messages, the aggregator their
    replies fold into, and the new global arrays made from it.

    A training part may keep state across rounds (SCAFFOLD's control): it names the
    records of its :meth:`state_dict` in :attr:`state_keys`.
    """

    @property
    def state_keys(self) -> tuple[str, ...]:
        """Names of the records :meth:`state_dict` may hold (none by default)."""
        return ()

    def content(
        self, arrays: ArrayRecord, config: ConfigRecord, records: RecordNames
    ) -> RecordDict:
        """What every training message of a round carries: the global arrays and the config
        by default."""
        return RecordDict({records.arrays_key: arrays, records.config_key: config})

    @abc.abstractmethod
    def aggregator(self, arrays: ArrayRecord, records: RecordNames, grid: Grid) -> Aggregator:
        """A fresh aggregator for the replies to a round that starts from ``arrays``."""

    @abc.abstractmethod
    def result(self, aggregator: Any, arrays: ArrayRecord) -> ArrayRecord | None:
        """The new global arrays from the aggregate of a round's replies, or None when they
        make no update (the round then keeps ``arrays``)."""

    def state_dict(self) -> RecordDict:
        """The part's state across rounds, for a checkpoint (empty by default)."""
        return RecordDict()

    def load_state_dict(self, state: RecordDict) -> None:
        """Restore what :meth:`state_dict` returned; ``state`` holds only records named in
        :attr:`state_keys`.

        Raises
        ------
        ConfigError
            If a record is not of the kind the part keeps (any record, by default).
        """
        if len(state):
            raise ConfigError(f"{type(self).__name__} keeps no state, got {list(state)}")


class MeanTraining(Training):
    """The average of the updated arrays weighted by the replies' ``num-examples``, folded
    into a :class:`WeightedAverage` as replies arrive (O(model) server memory).

    The accumulators of one round are handed to the next round's aggregator, so each round
    sums into memory already mapped.

    Parameters
    ----------
    precision
        The accumulators' precision (:class:`WeightedAverage`).

    Raises
    ------
    ConfigError
        If ``precision`` is not one of :class:`WeightedAverage`'s.
    """

    def __init__(self, precision: str = "float64") -> None:
        check_precision(precision)
        self.precision = precision
        self._workspace: list[np.ndarray[Any, Any]] | None = None

    def aggregator(self, arrays: ArrayRecord, records: RecordNames, grid: Grid) -> WeightedAverage:
        aggregator = WeightedAverage(
            arrays_key=records.arrays_key,
            metrics_key=records.metrics_key,
            weight_key=records.weight_key,
            spec=array_spec(arrays),
            workspace=self._workspace,
            precision=self.precision,
        )
        self._workspace = None
        return aggregator

    def result(self, aggregator: WeightedAverage, arrays: ArrayRecord) -> ArrayRecord | None:
        try:
            mean = aggregator.arrays()
        except AggregationError:
            # Every reply weighed zero (e.g. nodes with no data): there is no average to
            # take, so the round keeps the global arrays instead of ending the run.
            mean = None
        self._workspace = aggregator.take_workspace()
        return mean
