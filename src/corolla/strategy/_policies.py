"""Node selection policies beyond uniform: by weight, by attributes or tags, by recency.

A :class:`SelectionPolicy` sees the available node ids; what else a policy needs (a node's
data size, its tags, when it was last seen) comes from a lookup function given to it,
typically a grid's own: every :class:`~corolla.server.Grid` answers
``grid.node_attributes`` and ``grid.node_last_seen`` (with "unknown" when it knows nothing
of its nodes). Filters (:class:`AttributeSelection`, :class:`RecentlySeenSelection`)
narrow the nodes and hand the choice to an inner policy; every random choice comes from
the ``rng`` passed in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..core import ConfigError
from ._selection import SelectionPolicy, UniformSelection

__all__ = [
    "AttributeLookup",
    "AttributeSelection",
    "NodeDirectory",
    "RecentlySeenSelection",
    "WeightedSelection",
    "attribute_weight",
]

#: A node's attributes by node id (empty when unknown).
AttributeLookup = Callable[[int], Mapping[str, Any]]


@runtime_checkable
class NodeDirectory(Protocol):
    """What a selection policy may look up about nodes: the node directory every
    :class:`~corolla.server.Grid` declares."""

    def node_attributes(self, node_id: int) -> Mapping[str, Any]:
        """Attributes the node advertised (tags, hardware, data size); empty if none."""
        ...

    def node_last_seen(self, node_id: int) -> float | None:
        """When the node was last heard from (``time.time()`` seconds), or None."""
        ...


def attribute_weight(
    attributes: AttributeLookup, key: str = "num-examples", default: float = 0.0
) -> Callable[[int], float]:
    """A node's weight read from its attribute ``key`` (``default`` when absent)."""

    def weight(node_id: int) -> float:
        value = attributes(node_id).get(key, default)
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"node {node_id}: attribute {key!r} is not a number") from exc

    return weight


class WeightedSelection:
    """Nodes drawn without replacement, each draw proportional to the node's weight (e.g.
    its data size). Zero-weight nodes are chosen only when the positive ones run out,
    then uniformly. The result keeps the order of ``node_ids`` (a grid's order).

    Parameters
    ----------
    weight
        A node's weight: a function of its id, or a mapping (absent ids weigh ``default``).

    Raises
    ------
    ConfigError
        From :meth:`select`, if a weight is negative or not finite.
    """

    def __init__(
        self, weight: Callable[[int], float] | Mapping[int, float], *, default: float = 0.0
    ) -> None:
        if isinstance(weight, Mapping):
            table = dict(weight)
            self._weight: Callable[[int], float] = lambda n: table.get(n, default)
        else:
            self._weight = weight

    def select(self, node_ids: Sequence[int], num: int, rng: np.random.Generator) -> list[int]:
        ids = list(node_ids)
        if num >= len(ids):
            return ids
        weights = np.array([float(self._weight(n)) for n in ids], dtype=np.float64)
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ConfigError("node weights must be finite numbers >= 0")
        positive = np.flatnonzero(weights > 0)
        if len(positive) <= num:
            chosen = list(positive)
            rest = np.flatnonzero(weights == 0)
            chosen += list(rng.choice(rest, size=num - len(chosen), replace=False))
        else:
            p = weights[positive] / weights[positive].sum()
            chosen = list(positive[rng.choice(len(positive), size=num, replace=False, p=p)])
        return [ids[int(i)] for i in sorted(chosen)]


def _tags_of(value: Any) -> set[str]:
    if isinstance(value, str):
        return {t.strip() for t in value.split(",") if t.strip()}
    if isinstance(value, Iterable):
        return {str(t) for t in value}
    return set()


class AttributeSelection:
    """Only nodes whose attributes match; ``inner`` (uniform by default) chooses among them.

    A node is eligible when every ``require`` entry equals its attribute, it carries every
    tag in ``tags`` (its ``tags_key`` attribute: a list or a comma-separated string), and
    ``predicate`` (if given) accepts its attributes. With fewer eligible nodes than asked
    for, all of them are returned.

    Parameters
    ----------
    attributes
        A node's attributes, e.g. ``grid.node_attributes``.
    """

    def __init__(
        self,
        attributes: AttributeLookup,
        *,
        require: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        tags_key: str = "tags",
        predicate: Callable[[Mapping[str, Any]], bool] | None = None,
        inner: SelectionPolicy | None = None,
    ) -> None:
        self._attributes = attributes
        self.require = dict(require or {})
        self.tags = set(tags)
        self.tags_key = tags_key
        self.predicate = predicate
        self.inner = inner if inner is not None else UniformSelection()

    def eligible(self, node_id: int) -> bool:
        """Whether the node's attributes match."""
        attrs = self._attributes(node_id)
        if any(k not in attrs or attrs[k] != v for k, v in self.require.items()):
            return False
        if not self.tags <= _tags_of(attrs.get(self.tags_key, ())):
            return False
        return self.predicate is None or bool(self.predicate(attrs))

    def select(self, node_ids: Sequence[int], num: int, rng: np.random.Generator) -> list[int]:
        eligible = [n for n in node_ids if self.eligible(n)]
        return self.inner.select(eligible, min(num, len(eligible)), rng)


class RecentlySeenSelection:
    """Only nodes heard from in the last ``max_age`` seconds; ``inner`` chooses among them.

    Nodes never seen (``last_seen`` None) are excluded. With fewer recent nodes than asked
    for, all of them are returned.

    Parameters
    ----------
    last_seen
        When a node was last heard from, e.g. ``grid.node_last_seen``.
    max_age
        Seconds.
    clock
        The current time, in the same unit and epoch as ``last_seen`` (``time.time``).

    Raises
    ------
    ConfigError
        If ``max_age`` is negative or not a number.
    """

    def __init__(
        self,
        last_seen: Callable[[int], float | None],
        max_age: float,
        *,
        clock: Callable[[], float] = time.time,
        inner: SelectionPolicy | None = None,
    ) -> None:
        if not (max_age >= 0 and not math.isnan(max_age)):
            raise ConfigError(f"max_age must be >= 0, got {max_age}")
        self._last_seen = last_seen
        self.max_age = max_age
        self._clock = clock
        self.inner = inner if inner is not None else UniformSelection()

    def select(self, node_ids: Sequence[int], num: int, rng: np.random.Generator) -> list[int]:
        now = self._clock()
        recent = []
        for n in node_ids:
            seen = self._last_seen(n)
            if seen is not None and now - seen <= self.max_age:
                recent.append(n)
        return self.inner.select(recent, min(num, len(recent)), rng)
