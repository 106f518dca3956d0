"""Node selection: which nodes take part in a round."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..core import ConfigError

__all__ = ["SelectionPolicy", "UniformSelection", "sample_size"]


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
    """Every available node equally likely; the result is sorted by node id."""

    def select(self, node_ids: Sequence[int], num: int, rng: np.random.Generator) -> list[int]:
        ids = sorted(node_ids)
        if num >= len(ids):
            return ids
        chosen = rng.choice(len(ids), size=num, replace=False)
        return sorted(ids[int(i)] for i in chosen)
