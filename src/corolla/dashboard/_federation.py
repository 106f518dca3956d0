"""The federation over time: the link's traffic and connected nodes, sampled while the
dashboard runs.

The link counts its array traffic since it started (see ``corolla.runtime.link``'s
traffic meter) and its state knows which nodes are online now; neither keeps a past. A
:class:`FederationSamples` takes both every ``interval`` seconds into a ring of the last
``keep`` samples, so the federation page draws throughput each way and nodes connected
over the last hour (by default) without asking the state for anything it does not hold.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["FederationSamples", "TrafficCount"]


class TrafficCount(Protocol):
    """What the link counted in one direction (``corolla.runtime.link``'s ``Traffic``)."""

    @property
    def direction(self) -> str: ...

    @property
    def bytes(self) -> int: ...

    @property
    def busy_s(self) -> float: ...


class FederationSamples:
    """A ring of samples ``{"time", "nodes_online", "nodes", "bytes": {direction: n},
    "busy_s": {direction: s}}``, thread-safe.

    Parameters
    ----------
    traffic
        The link's traffic counts so far.
    nodes
        ``(online, registered)`` nodes now.
    keep
        How many samples to keep (the oldest go first).
    clock
        Seconds since the epoch; tests pass their own.
    """

    def __init__(
        self,
        traffic: Callable[[], Iterable[TrafficCount]],
        nodes: Callable[[], tuple[int, int]],
        *,
        keep: int = 1800,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._traffic = traffic
        self._nodes = nodes
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)

    def take(self) -> dict[str, Any]:
        """Take a sample now, keep it and return it."""
        counts = list(self._traffic())
        online, registered = self._nodes()
        sample = {
            "time": self._clock(),
            "nodes_online": online,
            "nodes": registered,
            "bytes": {c.direction: c.bytes for c in counts},
            "busy_s": {c.direction: c.busy_s for c in counts},
        }
        with self._lock:
            self._samples.append(sample)
        return sample

    def samples(self) -> list[dict[str, Any]]:
        """The samples kept, oldest first."""
        with self._lock:
            return list(self._samples)
