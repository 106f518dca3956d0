"""Node selection: which nodes take part in a round."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..core import ConfigError
from ..server import Grid

__all__ = ["NodeSampling", "SelectionPolicy", "UniformSelection", "sample_size"]


def sample_size(num_available: int, fraction: float, min_nodes: int) -> int:
    """How many of ``num_available`` nodes a round with ``fraction`` and ``min_nodes`` uses.

    Raises
    ------
    ConfigError
        If ``fraction`` is outside (0, 1] or ``min_nodes`` is negative.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    if min_nodes < 0:
        raise ConfigError(f"minimum number of nodes must be >= 0, got {min_nodes}")
    wanted = max(math.ceil(num_available * fraction - 1e-9), min_nodes)
    return min(wanted, num_available)


class SelectionPolicy(Protocol):
    """Chooses ``num`` of the available nodes, drawing randomness only from ``rng``."""

    def select(self, node_ids: Sequence[int], num: int, rng: np.random.Generator) -> list[int]: ...


class UniformSelection:
    """Every available node equally likely; the result keeps the order of ``node_ids`` (a
    grid's order: by node config, so the same seed picks the same partitions in a
    simulation and in a deployment)."""

    def select(self, node_ids: Sequence[int], num: int, rng: np.random.Generator) -> list[int]:
        ids = list(node_ids)
        if num >= len(ids):
            return ids
        chosen = rng.choice(len(ids), size=num, replace=False)
        return [ids[int(i)] for i in sorted(chosen)]


class NodeSampling:
    """Which nodes a strategy trains and evaluates each round: a fraction of the available
    ones (at least a minimum), chosen by a :class:`SelectionPolicy` that draws from ``rng``.

    Its settings are :class:`FedAvg`'s options of the same names (``selection`` and ``rng``
    given, not defaulted); a strategy's sampling draws nothing at random but from ``rng``.

    Raises
    ------
    ConfigError
        If a fraction is outside its range or a minimum is negative.
    """

    def __init__(
        self,
        *,
        fraction_train: float,
        fraction_evaluate: float,
        min_train_nodes: int,
        min_evaluate_nodes: int,
        min_available_nodes: int,
        available_timeout: float | None,
        selection: SelectionPolicy,
        rng: np.random.Generator,
    ) -> None:
        if not 0.0 < fraction_train <= 1.0:
            raise ConfigError(f"fraction_train must be in (0, 1], got {fraction_train}")
        if not 0.0 <= fraction_evaluate <= 1.0:
            raise ConfigError(f"fraction_evaluate must be in [0, 1], got {fraction_evaluate}")
        for name, value in [
            ("min_train_nodes", min_train_nodes),
            ("min_evaluate_nodes", min_evaluate_nodes),
            ("min_available_nodes", min_available_nodes),
        ]:
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_train_nodes = min_train_nodes
        self.min_evaluate_nodes = min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.available_timeout = available_timeout
        self.selection = selection
        self.rng = rng

    def train_nodes(self, grid: Grid) -> list[int]:
        """The nodes to train this round.

        Raises
        ------
        NotEnoughNodesError
            If fewer than ``min_available_nodes`` are available in time.
        """
        return self._sample(grid, self.fraction_train, self.min_train_nodes)

    def evaluate_nodes(self, grid: Grid) -> list[int]:
        """The nodes to evaluate this round; none, without waiting or drawing, when
        ``fraction_evaluate`` is 0.

        Raises
        ------
        NotEnoughNodesError
            If fewer than ``min_available_nodes`` are available in time.
        """
        if self.fraction_evaluate == 0.0:
            return []
        return self._sample(grid, self.fraction_evaluate, self.min_evaluate_nodes)

    def _sample(self, grid: Grid, fraction: float, min_nodes: int) -> list[int]:
        available = grid.wait_for_nodes(self.min_available_nodes, self.available_timeout)
        num = sample_size(len(available), fraction, min_nodes)
        return self.selection.select(available, num, self.rng)
