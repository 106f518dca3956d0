"""The array bytes a link moves each way, and how long it spends moving them.

Every array stream the link serves or receives (``PullArrays``, ``PushArrays`` of the
Fleet and ServerAppIo APIs) is one *transfer* in one of :data:`DIRECTIONS`. Per direction,
a :class:`TrafficMeter` counts the transfers, the bytes of array data they carried, and
the *busy* seconds: those during which at least one transfer that way was in flight.
Bytes over busy seconds is the link's throughput that way, whatever else the round
spent its time on (training, aggregation) and however many transfers overlapped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["DIRECTIONS", "Traffic", "TrafficMeter", "Transfer"]

#: Array data served to nodes, received from nodes, served to ServerApps, received from them.
DIRECTIONS = ("to_nodes", "from_nodes", "to_serverapps", "from_serverapps")

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class Traffic:
    """What a :class:`TrafficMeter` counted in one direction since it was made."""

    direction: str
    #: Bytes of array data (chunk data, without the chunks' headers).
    bytes: int
    #: Transfers begun (streams opened).
    transfers: int
    #: Seconds during which at least one transfer this way was in flight.
    busy_s: float

    @property
    def bytes_per_s(self) -> float | None:
        """``bytes / busy_s``; None before any transfer took time."""
        return self.bytes / self.busy_s if self.busy_s > 0 else None


@dataclasses.dataclass
class _Counts:
    bytes: int = 0
    transfers: int = 0
    in_flight: int = 0
    busy_s: float = 0.0
    busy_since: float = 0.0


class Transfer:
    """One transfer in flight: :meth:`count` the array bytes it moves."""

    def __init__(self, meter: TrafficMeter, direction: str) -> None:
        self._meter = meter
        self._direction = direction

    def count(self, nbytes: int) -> None:
        """Add ``nbytes`` bytes of array data to this transfer's direction."""
        self._meter._count(self._direction, nbytes)

    def counted(self, items: Iterable[_T], size: Callable[[_T], int]) -> Iterator[_T]:
        """``items``, counting ``size(item)`` bytes for each as it goes by."""
        for item in items:
            self.count(size(item))
            yield item


class TrafficMeter:
    """Thread-safe counters of a link's array traffic by direction (see the module).

    ``clock`` gives seconds (monotonic); tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts = {direction: _Counts() for direction in DIRECTIONS}
        self._idle_since = 0.0

    @contextlib.contextmanager
    def transfer(self, direction: str) -> Iterator[Transfer]:
        """A transfer in ``direction`` for the block's duration, failed or not.

        Raises
        ------
        ValueError
            If ``direction`` is not one of :data:`DIRECTIONS`.
        """
        if direction not in self._counts:
            raise ValueError(f"unknown traffic direction {direction!r}; known: {DIRECTIONS}")
        with self._lock:
            counts = self._counts[direction]
            counts.transfers += 1
            if counts.in_flight == 0:
                counts.busy_since = self._clock()
            counts.in_flight += 1
        try:
            yield Transfer(self, direction)
        finally:
            with self._lock:
                counts.in_flight -= 1
                if counts.in_flight == 0:
                    now = self._clock()
                    counts.busy_s += now - counts.busy_since
                    self._idle_since = now

    def idle_since(self) -> float | None:
        """When the last transfer, any way, ended (``clock`` time; 0.0 if none ever ran);
        None while one is in flight."""
        with self._lock:
            if any(counts.in_flight for counts in self._counts.values()):
                return None
            return self._idle_since

    def _count(self, direction: str, nbytes: int) -> None:
        with self._lock:
            self._counts[direction].bytes += nbytes

    def totals(self) -> list[Traffic]:
        """The counts of every direction so far, a busy period still open included."""
        with self._lock:
            now = self._clock()
            return [
                Traffic(
                    direction,
                    counts.bytes,
                    counts.transfers,
                    counts.busy_s + (now - counts.busy_since if counts.in_flight else 0.0),
                )
                for direction, counts in self._counts.items()
            ]
