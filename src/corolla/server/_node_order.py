"""The order a grid lists its nodes in: by their node config, then by id.

A strategy that samples nodes picks positions in the list a grid gives, so the same seed
picks the same nodes wherever the list is the same. Node ids cannot make it so: a
simulation numbers its nodes 1..N in partition order, a link gives random 64-bit ids.
Node configs can: a deployed node started with ``--node-config partition-id=3
num-partitions=10`` is listed where its simulated twin is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core import UserConfigValue

__all__ = ["node_order"]

#: Values of one key compare within their kind, numbers before strings.
_NUMBER, _TEXT = 0, 1


def _sort_key(config: Mapping[str, UserConfigValue]) -> tuple[tuple[str, int, Any], ...]:
    # Values are compared only with values of their kind: the kind comes first.
    key: list[tuple[str, int, Any]] = []
    for name in sorted(config):
        value = config[name]
        if isinstance(value, bool | int | float):
            key.append((name, _NUMBER, float(value)))
        else:
            key.append((name, _TEXT, str(value)))
    return tuple(key)


def node_order(configs: Mapping[int, Mapping[str, UserConfigValue]]) -> list[int]:
    """Node ids sorted by their node config (keys in name order, numbers by value, then
    strings), then by id: the order :meth:`Grid.node_ids <corolla.server.Grid.node_ids>`
    lists nodes in. Nodes with the simulation's configs (``partition-id``,
    ``num-partitions``) come in partition order."""
    return sorted(configs, key=lambda node_id: (_sort_key(configs[node_id]), node_id))
