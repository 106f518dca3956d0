"""A ``grpc.aio`` server on an event loop of its own thread, driven from synchronous code.

The link serves its Fleet API this way: a node's open ``Receive`` stream is a suspended
coroutine, not a thread, so a thousand connected nodes cost a thousand small objects
rather than a thousand threads taking turns at the GIL. Blocking work (the state's
transactions, blob writes) runs on bounded thread pools that the handlers await.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent import futures
from typing import Any, TypeVar

import grpc

__all__ = ["AsyncServer"]

T = TypeVar("T")

#: Longest the loop waits, when stopping, for cancelled tasks to finish.
_SETTLE_S = 5.0


async def _cancel_tasks() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class AsyncServer:
    """A ``grpc.aio`` server running on a new thread's event loop.

    Parameters
    ----------
    name
        Names the loop's thread and the pool's threads.
    options
        The server's channel options.
    workers
        Threads for the short blocking work of handlers (:attr:`executor`).
    stream_workers
        Threads that consume request streams, such as uploads, which last as long as
        the client sends (:attr:`stream_executor`): apart, so that slow uploads never
        hold up the short work.
    """

    def __init__(self, name: str, options: Any, workers: int, stream_workers: int) -> None:
        self.executor = futures.ThreadPoolExecutor(workers, f"{name}-work")
        self.stream_executor = futures.ThreadPoolExecutor(stream_workers, f"{name}-stream")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._stopped = False

        async def create() -> grpc.aio.Server:
            return grpc.aio.server(options=options)

        self.server: grpc.aio.Server = self.call(create())

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def run(self, function: Callable[[], T]) -> T:
        """Call ``function`` on the server's loop (gRPC's server methods belong there)."""

        async def call() -> T:
            return function()

        return self.call(call())

    def start(self) -> None:
        self.call(self.server.start())

    def stop(self, grace: float) -> None:
        """Stop serving (calls in flight get ``grace`` seconds), end the loop and the pool,
        and join their threads. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.call(self.server.stop(grace))
        finally:
            # Tasks the handlers left (a batch still on the pool) end before the loop does.
            asyncio.run_coroutine_threadsafe(_cancel_tasks(), self._loop).result(_SETTLE_S)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.stream_executor.shutdown(wait=True, cancel_futures=True)
