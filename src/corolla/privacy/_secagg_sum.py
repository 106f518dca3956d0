"""The masked modular sum: the aggregator the masked-input stage of SecAgg+ folds into."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import AggregationError, ArrayRecord, RecordDict
from ._secagg_wire import MASKED_ARRAY, MASKED_KEY

__all__ = ["MaskedSum"]


class MaskedSum:
    """The sum in Z_(2**32) of the nodes' masked vectors, and which nodes it holds.

    It is an :class:`~corolla.server.Aggregator` (a monoid): the runtime may fold the
    masked vectors wherever it likes, as replies arrive or inside simulation workers; the
    server holds one vector of the model's size and never keeps an individual one.

    Parameters
    ----------
    length
        The vectors' length.
    expected
        The nodes that were asked for a masked vector; a reply from another node, or a
        second one from the same node, is rejected.
    """

    def __init__(self, length: int, expected: frozenset[int]) -> None:
        self.length = length
        self.expected = expected
        self.nodes: set[int] = set()
        self.total: np.ndarray[Any, np.dtype[np.uint32]] | None = None

    @property
    def count(self) -> int:
        return len(self.nodes)

    def empty(self) -> MaskedSum:
        return MaskedSum(self.length, self.expected)

    def add(self, content: RecordDict, node_id: int) -> None:
        """Fold one node's masked vector in.

        Raises
        ------
        AggregationError
            If the reply holds no uint32 vector of the round's length, or comes from a
            node not asked for one or already folded in.
        """
        record = content.get(MASKED_KEY)
        vector = record.get(MASKED_ARRAY) if isinstance(record, ArrayRecord) else None
        if vector is None or vector.dtype != np.uint32 or vector.shape != (self.length,):
            raise AggregationError(
                f"a masked-input reply must hold ArrayRecord {MASKED_KEY!r} with a uint32 "
                f"vector {MASKED_ARRAY!r} of length {self.length}"
            )
        if node_id not in self.expected or node_id in self.nodes:
            raise AggregationError(f"node {node_id} was not asked for a masked vector now")
        if self.total is None:
            self.total = vector.copy()
        else:
            np.add(self.total, vector, out=self.total)
        self.nodes.add(node_id)

    def merge(self, other: MaskedSum) -> None:
        """Fold another partial sum in.

        Raises
        ------
        AggregationError
            If both hold a vector of the same node.
        """
        if self.nodes & other.nodes:
            raise AggregationError(f"nodes {sorted(self.nodes & other.nodes)} folded twice")
        if other.total is not None:
            if self.total is None:
                self.total = other.total.copy()
            else:
                np.add(self.total, other.total, out=self.total)
        self.nodes |= other.nodes
