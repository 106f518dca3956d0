"""Downloads ahead of the consumer: a reply's arrays are fetched while earlier ones fold.

A ServerApp receives a round's replies as a stream and folds each into its aggregate.
Each reply's arrays are a separate download from the link; done one after the other,
a thousand replies are a thousand round trips on the round's critical path.
:func:`prefetched` runs the downloads of the next few replies on worker threads while the
consumer folds the current one, bounded in count and in bytes so that a round of large
models holds no more than one reply ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent import futures
from typing import Generic, TypeVar

__all__ = ["prefetched"]

R = TypeVar("R")


class _Failed:
    """The stream of responses raised ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Budget:
    """How many responses, and how many of their bytes, are fetched and not yet done with."""

    def __init__(self, depth: int, max_bytes: int) -> None:
        self._condition = threading.Condition()
        self._depth = depth
        self._max_bytes = max_bytes
        self._count = 0
        self._bytes = 0
        self.stopped = False

    def take(self, size: int) -> bool:
        """Wait until ``size`` more bytes fit (one response always fits); False if stopped."""
        with self._condition:
            self._condition.wait_for(
                lambda: (
                    self.stopped
                    or self._count == 0
                    or (self._count < self._depth and self._bytes + size <= self._max_bytes)
                )
            )
            if self.stopped:
                return False
            self._count += 1
            self._bytes += size
            return True

    def give_back(self, size: int) -> None:
        with self._condition:
            self._count -= 1
            self._bytes -= size
            self._condition.notify_all()

    def stop(self) -> None:
        with self._condition:
            self.stopped = True
            self._condition.notify_all()


class _Item(Generic[R]):
    __slots__ = ("fetched", "response", "size")

    def __init__(self, response: R, size: int, fetched: futures.Future[None]) -> None:
        self.response = response
        self.size = size
        self.fetched = fetched


def prefetched(
    responses: Iterator[R],
    fetch: Callable[[R], None],
    size: Callable[[R], int],
    cancel: Callable[[], object],
    *,
    depth: int = 8,
    max_bytes: int = 32 * 1024 * 1024,
) -> Generator[R, None, None]:
    """Yield each of ``responses`` once ``fetch(response)`` has run for it.

    While the consumer holds one response, the fetches of up to ``depth - 1`` following
    ones run on worker threads, as long as their ``size`` sum stays within ``max_bytes``
    (a response larger than that is fetched alone). A response of size 0 has nothing to
    download: its ``fetch`` runs at once, on the thread reading the responses. A response
    is held until the consumer asks for the next one. ``cancel`` ends the stream of
    ``responses`` when the consumer stops early.

    Raises
    ------
    Exception
        What iterating ``responses`` or a ``fetch`` raised, when its turn comes.
    """
    budget = _Budget(depth, max_bytes)
    ready: queue.Queue[_Item[R] | _Failed | None] = queue.Queue()
    pool = futures.ThreadPoolExecutor(max(1, depth - 1), "corolla-prefetch")

    def read() -> None:
        try:
            for response in responses:
                needed = size(response)
                if not budget.take(needed):
                    return
                if needed:
                    fetched = pool.submit(fetch, response)
                else:  # nothing to download (arrays inline, or none): no hop to the pool
                    fetched = futures.Future()
                    fetch(response)
                    fetched.set_result(None)
                ready.put(_Item(response, needed, fetched))
            ready.put(None)
        except BaseException as exc:  # handed to the consumer, who raises it
            ready.put(_Failed(exc))

    reader = threading.Thread(target=read, name="corolla-prefetch-read", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, _Failed):
                raise item.error
            item.fetched.result()
            yield item.response
            budget.give_back(item.size)
    finally:
        budget.stop()
        cancel()
        reader.join()
        pool.shutdown(wait=True, cancel_futures=True)
