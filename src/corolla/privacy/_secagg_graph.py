"""The communication graph of SecAgg+ (Bell et al., 2020): whom each node shares with.

In SecAgg (Bonawitz et al., 2017) every node masks with, and secret-shares to, every other
node: O(n) work per node and O(n**2) at the server. SecAgg+ replaces the complete graph by
a random ``k``-regular graph with ``k = O(log n)``: a node masks only with its ``k``
neighbours and shares its secrets only with them, so work per node is O(log n) masks and
the server's O(n log n), and privacy and dropout robustness hold with high probability
as long as the graph stays connected among honest, surviving nodes.

The graph is the Harary graph ``H(k, n)`` (each node linked to the ``k / 2`` nearest on
each side of a ring) over a random permutation of the nodes, drawn from the server's
seeded generator, as in the paper.

Parameters
----------
- ``k`` (neighbours): by default ``min(n - 1, 2 * ceil(1.5 * log2 n))``: 14 for 20 nodes,
  20 for 100, 26 for 300, 30 for 1,000. ``k = n - 1`` is SecAgg's complete graph.
- ``t`` (the threshold): ``floor(threshold_fraction * k) + 1`` shares of a node's secrets
  give them back. ``threshold_fraction >= 0.5`` makes ``t > k / 2``: a server would need
  ``t`` of a node's neighbours to reveal its self-mask seed and ``t`` others its masking
  key to unmask it, which ``2 t > k`` forbids since honest nodes reveal one or the other.
"""

from __future__ import annotations

import math

import numpy as np

from ..core import ConfigError

__all__ = ["default_neighbours", "harary_graph", "reconstruction_threshold"]


def default_neighbours(num_nodes: int) -> int:
    """The default degree ``k`` for ``num_nodes`` nodes: ``min(n - 1, 2 ceil(1.5 log2 n))``.

    Raises
    ------
    ConfigError
        If ``num_nodes`` < 2.
    """
    if num_nodes < 2:
        raise ConfigError(f"secure aggregation needs at least 2 nodes, got {num_nodes}")
    return min(num_nodes - 1, 2 * math.ceil(1.5 * math.log2(num_nodes)))


def reconstruction_threshold(neighbours: int, threshold_fraction: float) -> int:
    """The shares ``t`` that give a node's secrets back: ``floor(fraction * k) + 1``.

    Raises
    ------
    ConfigError
        If ``threshold_fraction`` is outside ``[0.5, 1)`` or ``neighbours`` < 1.
    """
    if not 0.5 <= threshold_fraction < 1:
        raise ConfigError(
            f"threshold_fraction must be in [0.5, 1) (at least half of a node's neighbours, "
            f"so no server can get both of its secrets), got {threshold_fraction!r}"
        )
    if neighbours < 1:
        raise ConfigError(f"a node needs at least one neighbour, got {neighbours}")
    return min(neighbours, math.floor(threshold_fraction * neighbours) + 1)


def harary_graph(
    node_ids: list[int], neighbours: int, rng: np.random.Generator
) -> dict[int, list[int]]:
    """Each node's neighbours in the Harary graph ``H(k, n)`` over a random permutation of
    ``node_ids``: ``k / 2`` on each side of it on the ring (all others when ``k = n - 1``).

    Raises
    ------
    ConfigError
        If ``neighbours`` is outside ``1..n-1``, or odd while below ``n - 1``.
    """
    n = len(node_ids)
    if not 1 <= neighbours <= n - 1:
        raise ConfigError(f"neighbours must be in 1..{n - 1} for {n} nodes, got {neighbours}")
    if neighbours == n - 1:
        return {u: [v for v in node_ids if v != u] for u in node_ids}
    if neighbours % 2:
        raise ConfigError(
            f"neighbours must be even (or {n - 1}, every other node), got {neighbours}"
        )
    ring = [node_ids[i] for i in rng.permutation(n)]
    half = neighbours // 2
    return {
        ring[i]: sorted(ring[(i + d) % n] for d in range(-half, half + 1) if d) for i in range(n)
    }
