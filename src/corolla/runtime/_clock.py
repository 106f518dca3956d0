"""Time, as the runtime reads it: wall-clock seconds and monotonic seconds.

The link and the node read the time through a :class:`Clock` they are given, so a test
can move time on (:class:`ManualClock`) instead of sleeping through a grace period or a
heartbeat timeout. Waiting itself (a thread blocked on an event) stays on the real clock.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Where the runtime reads the time."""

    def time(self) -> float:
        """Seconds since the epoch, as ``time.time()``: stored, compared across processes."""
        ...

    def monotonic(self) -> float:
        """Seconds that only go forward, as ``time.monotonic()``: durations and deadlines."""
        ...


class SystemClock:
    """The machine's clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that stands still until :meth:`advance` moves it (for tests).

    Parameters
    ----------
    start
        The wall-clock time it starts at (the machine's, by default: files the test
        writes get the machine's times); its monotonic time starts at 0.
    """

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._start = time.time() if start is None else start
        self._elapsed = 0.0

    def time(self) -> float:
        with self._lock:
            return self._start + self._elapsed

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move both clocks ``seconds`` forward.

        Raises
        ------
        ValueError
            If ``seconds`` is negative: time does not go back.
        """
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, not by {seconds} s")
        with self._lock:
            self._elapsed += seconds
