"""Wake-ups between threads of the link: "something changed for key K".

The state store notifies nobody, so the link signals here after each write that a
waiting stream cares about (a message stored for a node, a reply stored for a run, an
event appended). A waiter remembers the generation it last saw, so a signal that comes
between its read of the store and its wait is never missed.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable

__all__ = ["Signals"]


class Signals:
    """Per-key generation counters under one condition variable."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generations: dict[Hashable, int] = {}
        self._epoch = 0  # bumped by notify_all: counts for every key
        self._closed = False

    def _current(self, key: Hashable) -> int:
        return self._generations.get(key, 0) + self._epoch

    def generation(self, key: Hashable) -> int:
        """The current generation of ``key``: pass it to :meth:`wait` after reading."""
        with self._condition:
            return self._current(key)

    def notify(self, keys: Iterable[Hashable]) -> None:
        """Mark ``keys`` changed and wake their waiters."""
        with self._condition:
            for key in keys:
                self._generations[key] = self._generations.get(key, 0) + 1
            self._condition.notify_all()

    def notify_all(self) -> None:
        """Wake every waiter (e.g. after a sweep that may have changed anything)."""
        with self._condition:
            self._epoch += 1
            self._condition.notify_all()

    def wait(self, key: Hashable, seen: int, timeout: float) -> bool:
        """Wait until ``key`` moves past generation ``seen``, the signals close, or
        ``timeout`` seconds pass; True if it changed or closed."""
        with self._condition:
            return self._condition.wait_for(
                lambda: self._closed or self._current(key) != seen, timeout
            )

    def close(self) -> None:
        """Wake every waiter for good: the link is stopping."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
