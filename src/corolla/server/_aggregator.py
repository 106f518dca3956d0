"""The aggregation contract: replies fold into an accumulator that can be merged."""

from __future__ import annotations

from typing import Protocol, TypeVar

from ..core import RecordDict

__all__ = ["Aggregator"]

A = TypeVar("A", bound="Aggregator")


class Aggregator(Protocol):
    """A mergeable accumulator of replies (a monoid).

    The runtime may fold replies wherever it is cheapest: one by one as they arrive, inside
    simulation workers, or in intermediate tiers, merging the partial results at the root.
    Implementations must satisfy ``a.merge(b)`` == folding b's replies into a, must be
    picklable (workers receive ``empty()`` copies), and must not keep references to another
    aggregator's buffers after :meth:`merge` (they may live in shared memory).
    """

    @property
    def count(self) -> int:
        """Number of replies folded in so far."""
        ...

    def empty(self: A) -> A:
        """A fresh aggregator with the same settings and nothing folded in."""
        ...

    def add(self, content: RecordDict, node_id: int) -> None:
        """Fold one reply's content in.

        Raises
        ------
        AggregationError
            If the reply cannot be folded (missing records, wrong shapes or dtypes, NaN...);
            the aggregator is then unchanged.
        """
        ...

    def merge(self: A, other: A) -> None:
        """Fold another partial aggregate of the same kind into this one."""
        ...
