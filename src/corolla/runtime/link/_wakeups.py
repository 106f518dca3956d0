"""Wake-ups between threads of the link: "something changed for key K".

The state store notifies nobody, so the link signals here after each write that a
waiting stream cares about (a message stored for a node, a reply stored for a run, an
event appended). A waiter remembers the generation it last saw, so a signal that comes
between its read of the store and its wait is never missed.

Each key has its own condition variable: with a thousand nodes each waiting on its own
``Receive`` stream, a reply stored for a run wakes the run's reply stream only, not a
thousand threads that would check their key and go back to sleep. Coroutines (the Fleet
server's ``Receive`` streams) wait with :meth:`Signals.wait_async`, woken through their
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Hashable, Iterable

__all__ = ["Signals", "events_key", "node_key", "replies_key"]


def node_key(node_id: int) -> tuple[str, int]:
    """Changes when a message is stored for node ``node_id``."""
    return ("node", node_id)


def replies_key(run_id: int) -> tuple[str, int]:
    """Changes when a reply is stored for run ``run_id``, or the run ends."""
    return ("replies", run_id)


def events_key(run_id: int) -> tuple[str, int]:
    """Changes when an event of run ``run_id`` is appended."""
    return ("events", run_id)


class _Waiters:
    """The condition of one key, and how many threads wait on it."""

    __slots__ = ("condition", "count", "futures")

    def __init__(self, lock: threading.Lock) -> None:
        self.condition = threading.Condition(lock)
        self.count = 0
        self.futures: set[asyncio.Future[None]] = set()

    def wake(self, woken: list[asyncio.Future[None]]) -> None:
        """Wake the threads; add the coroutines' futures to ``woken``."""
        self.condition.notify_all()
        woken.extend(self.futures)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        _resolve(future)


def _wake_futures(futures: list[asyncio.Future[None]]) -> None:
    """Resolve ``futures`` on their loops: one hand-off per loop, however many futures
    (a round stored for a thousand nodes wakes a thousand ``Receive`` streams)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for future in futures:
        by_loop.setdefault(future.get_loop(), []).append(future)
    for loop, waiting in by_loop.items():
        # A closed loop raises: nobody waits there any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve_all, waiting)


class Signals:
    """Per-key generation counters, with a condition variable per awaited key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[Hashable, _Waiters] = {}
        self._generations: dict[Hashable, int] = {}
        self._epoch = 0  # bumped by notify_all: counts for every key
        self._closed = False

    def _current(self, key: Hashable) -> int:
        return self._generations.get(key, 0) + self._epoch

    def generation(self, key: Hashable) -> int:
        """The current generation of ``key``: pass it to :meth:`wait` after reading."""
        with self._lock:
            return self._current(key)

    def notify(self, keys: Iterable[Hashable]) -> None:
        """Mark ``keys`` changed and wake their waiters."""
        woken: list[asyncio.Future[None]] = []
        with self._lock:
            for key in keys:
                self._generations[key] = self._generations.get(key, 0) + 1
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.wake(woken)
        _wake_futures(woken)

    def _wake_everyone(self) -> None:
        woken: list[asyncio.Future[None]] = []
        for waiters in self._waiters.values():
            waiters.wake(woken)
        _wake_futures(woken)

    def notify_all(self) -> None:
        """Wake every waiter (e.g. after a sweep that may have changed anything)."""
        with self._lock:
            self._epoch += 1
            self._wake_everyone()

    def wait(self, key: Hashable, seen: int, timeout: float) -> bool:
        """Wait until ``key`` moves past generation ``seen``, the signals close, or
        ``timeout`` seconds pass; True if it changed or closed."""
        with self._lock:
            waiters = self._waiters.get(key)
            if waiters is None:
                waiters = self._waiters[key] = _Waiters(self._lock)
            waiters.count += 1
            try:
                return waiters.condition.wait_for(
                    lambda: self._closed or self._current(key) != seen, timeout
                )
            finally:
                waiters.count -= 1
                if waiters.count == 0:
                    del self._waiters[key]

    async def wait_async(self, key: Hashable, seen: int, timeout: float) -> bool:
        """:meth:`wait` for a coroutine: it waits without holding a thread."""
        with self._lock:
            if self._closed or self._current(key) != seen:
                return True
            waiters = self._waiters.get(key)
            if waiters is None:
                waiters = self._waiters[key] = _Waiters(self._lock)
            future = asyncio.get_running_loop().create_future()
            waiters.futures.add(future)
            waiters.count += 1
        timer = future.get_loop().call_later(timeout, _resolve, future)
        try:
            await future
        finally:
            timer.cancel()
            with self._lock:
                waiters.futures.discard(future)
                waiters.count -= 1
                if waiters.count == 0:
                    del self._waiters[key]
        with self._lock:
            return self._closed or self._current(key) != seen

    def close(self) -> None:
        """Wake every waiter for good: the link is stopping."""
        with self._lock:
            self._closed = True
            self._wake_everyone()

    @property
    def closed(self) -> bool:
        return self._closed
