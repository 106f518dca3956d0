"""Blocking work of many coroutines, run in batches on one worker thread.

The Fleet service's handlers are coroutines on one event loop; what they ask of the
state (store a reply, hand out a node's messages) blocks, so it runs on a thread. Handed
over one call at a time, a round of a thousand nodes is thousands of thread hand-offs,
each a wake-up of a pool thread, a turn at the state's lock and a wake-up of the loop;
on a small machine the context switches cost more than the work. A :class:`LoopBatcher`
instead gathers the calls made while its previous batch ran and hands them to the thread
together: one hop, one transaction and one fsync for the whole batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Generic, TypeVar

from corolla.core import CorollaError

__all__ = ["LoopBatcher"]

ItemT = TypeVar("ItemT")
R = TypeVar("R")


class LoopBatcher(Generic[ItemT, R]):
    """Runs ``run_batch`` on ``executor`` for the items submitted on one event loop.

    Parameters
    ----------
    executor
        Where ``run_batch`` runs.
    run_batch
        Takes the items of a batch and returns, in order, each item's result or the
        exception to raise in its submitter.
    max_batch
        Most items in one batch.
    size
        The bytes an item holds (a reply with its arrays inline), with ``max_bytes``:
        a batch takes items while their sizes sum to at most ``max_bytes`` (and at least
        one item), so that a batch of large items does not hold them all in memory at once.
    max_bytes
        Most bytes of items in one batch.
    """

    def __init__(
        self,
        executor: futures.Executor,
        run_batch: Callable[[Sequence[ItemT]], Sequence[R | BaseException]],
        max_batch: int = 512,
        *,
        size: Callable[[ItemT], int] | None = None,
        max_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self._executor = executor
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._size = size
        self._max_bytes = max_bytes
        self._pending: list[tuple[ItemT, asyncio.Future[R]]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> R:
        """The result of ``item`` once its batch ran.

        Raises
        ------
        BaseException
            What ``run_batch`` gave for the item, or raised for its whole batch.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        # An exception raised here keeps this frame in its traceback, and the future keeps
        # the exception: the frame must hold neither, or the cycle keeps the item (a reply
        # of megabytes) until a garbage collection, which a link runs rarely.
        del item
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain(loop))
        try:
            return await future
        finally:
            del future

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self._pending:
                count = self._batch_length()
                batch = self._pending[:count]
                del self._pending[:count]
                items = [item for item, _ in batch]
                try:
                    results = await loop.run_in_executor(self._executor, self._run_batch, items)
                    if len(results) != len(batch):
                        raise RuntimeError(
                            f"a batch of {len(batch)} items gave {len(results)} results"
                        )
                except asyncio.CancelledError:
                    for _, future in batch + self._pending:
                        future.cancel()
                    self._pending.clear()
                    raise
                except Exception as exc:  # handed to every submitter of the batch
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results):
                    if future.done():  # its submitter was cancelled
                        continue
                    if isinstance(result, CorollaError):
                        future.set_exception(_without_tracebacks(result))
                    elif isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = False

    def _batch_length(self) -> int:
        """How many of the pending items the next batch takes."""
        count = min(len(self._pending), self._max_batch)
        if self._size is None:
            return count
        total = 0
        for taken, (item, _) in enumerate(self._pending[:count]):
            total += self._size(item)
            if total > self._max_bytes and taken > 0:
                return taken
        return count


def _without_tracebacks(error: BaseException) -> BaseException:
    """``error``, its tracebacks and those of the errors it was raised from dropped.

    ``run_batch`` keeps the errors of its items in the list it returns, and their
    tracebacks keep its frame, and so that list: a cycle holding every item of the batch
    (replies of megabytes) until a garbage collection, which a link runs rarely. A
    refusal's traceback is never shown: the caller reads its message.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return error
