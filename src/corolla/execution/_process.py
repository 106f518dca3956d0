"""The process backend: worker processes that load the ClientApp once and run blocks of calls.

Each worker is a spawned process connected by a pipe. Message contents are placed in
shared memory once per batch (see ``_shm``), so a global model is never pickled per node.
Workers fold successful replies into the task's aggregator and send back only the partial
aggregate, through shared memory too. A worker that dies or overruns the timeout is killed
and replaced; the calls it held become error replies, and the run goes on. A worker is
replaced at once (the simulation's default), or lazily, when the next batch comes (a
node's run process: one whose run ended meanwhile is never started again).

Shared memory segments are reused rather than created afresh for every batch: the pages of
a new segment are faulted in on first write at several times the cost of the write. The
writer of a segment owns it; a reader reports when it has let go of one (nothing of its
still views it), and only then may the writer fill it again:

- contents: the executor writes, workers read. At the end of a batch each worker that
  mapped contents is asked to detach and answers with the segments it closed.
- results: a worker writes, the executor reads. Once the consumer of a result has dropped
  it, the executor closes the segment and hands its name back with the worker's next
  request.

Messages from the executor to a worker: ``("task", index, calls, contents, aggregator,
released)`` (the aggregator packed as contents are), ``("detach", released)``, or
``None`` to stop. From a worker: ``("ready", pid)`` or ``("load_error", reason)`` once,
then ``("result", index, payload, num_calls, closed)`` for a task and ``("detached",
closed)`` for a detach.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any, Literal

from ..core import (
    AppLoadError,
    ConfigError,
    Error,
    ErrorCode,
    ExecutionError,
    Message,
    RecordDict,
    UserConfigValue,
)
from ..project import ComponentRef
from ._executor import Executor, Task, TaskResult
from ._shm import Payload, SegmentPool, abandon, attach, pack, release, unpack
from ._worker import worker_main

__all__ = ["ProcessExecutor"]

AppSource = ComponentRef | Callable[..., Any]

# (metadata, content key, node id, node config, state)
_WireCall = tuple[Any, int, int, Mapping[str, UserConfigValue], RecordDict]


class _Worker:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.task: Task | None = None
        # Whether it said it loaded the app (see _await_ready).
        self.ready = False
        # Content segments it may still map, result segments of its own it may reuse, and
        # every result segment it has written (unlinked here if it dies).
        self.attached: set[str] = set()
        self.released: list[str] = []
        self.owned: set[str] = set()

    def take_released(self) -> list[str]:
        released, self.released = self.released, []
        return released


def _describe_exit(exitcode: int | None) -> str:
    """How a process ended, for an error reply: its exit status or the signal that killed it."""
    if exitcode is None:
        return "ended"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            return f"was killed by signal {-exitcode}"
        return f"was killed by signal {-exitcode} ({name})"
    return f"exited with status {exitcode}"


def _failed(task: Task, code: ErrorCode, reason: str) -> TaskResult:
    replies = [
        Message(
            error=Error(int(code), f"node {call.node_id}: {reason}"),
            reply_to=call.message,
        )
        for call in task.calls
    ]
    return TaskResult(task.index, None, replies, {}, len(task.calls))


def start_forkserver(preload: Iterable[str] = ()) -> bool:
    """Start this process's fork server, which imports what a worker needs (NumPy, the
    worker's modules, and the modules named in ``preload``) once: workers it forks start
    without importing them again. The server is multiprocessing's, one per process; it
    ends once that process and the workers it forked have. Idempotent (``preload`` counts
    only at the first call); False where there is no fork server (not POSIX).

    Start it early (a node does when it starts): the imports then happen while nothing
    waits for a worker. A program run as a script (the ``corolla`` command) names the
    modules its script imports: multiprocessing runs the script again in every process it
    starts, which is cheap only where the server imported them already.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    multiprocessing.set_forkserver_preload(["corolla.execution._worker", *preload])
    multiprocessing.forkserver.ensure_running()
    return True


class ProcessExecutor(Executor):
    """Runs calls in ``num_workers`` spawned processes (default: one per core).

    Parameters
    ----------
    client_app
        A :class:`ComponentRef` each worker imports, or a picklable ClientApp (one whose
        handlers are module-level functions).
    start_timeout
        Seconds a worker may take to start and load the app.
    working_dir
        The directory workers run in (created if missing); the caller's by default.
    lazy_restart
        Start a worker that died or overran a deadline again only when the next batch
        comes, rather than at once.
    process_name
        The name of the worker processes.
    start_method
        ``"spawn"`` (a fresh interpreter per worker: the simulation's workers, started
        once) or ``"forkserver"`` (forked from a server that imported the worker's
        modules already, see :func:`start_forkserver`: a worker starts in tens of
        milliseconds instead of about a second, for a node that starts one per run).

    Raises
    ------
    ConfigError
        If ``num_workers`` < 1 or the ClientApp cannot be pickled.
    """

    def __init__(
        self,
        client_app: AppSource,
        run_id: int = 0,
        run_config: Mapping[str, UserConfigValue] | None = None,
        num_workers: int | None = None,
        start_timeout: float = 120.0,
        *,
        working_dir: str | os.PathLike[str] | None = None,
        lazy_restart: bool = False,
        process_name: str = "corolla-sim-worker",
        start_method: Literal["spawn", "forkserver"] = "spawn",
    ) -> None:
        workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
        if workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {workers}")
        try:
            self._app_pickle = pickle.dumps(client_app)
        except Exception as exc:
            raise ConfigError(
                "the ClientApp cannot be sent to worker processes "
                f"({type(exc).__name__}: {exc}); define it and its handlers at module level, "
                "pass a 'module:attribute' reference, or use the inline backend"
            ) from exc
        self._run_id = run_id
        self._run_config = dict(run_config or {})
        self._num_workers = workers
        self._start_timeout = start_timeout
        self._working_dir = None if working_dir is None else str(Path(working_dir).resolve())
        self._lazy_restart = lazy_restart
        self._process_name = process_name
        self._started = False
        self._context = (
            multiprocessing.get_context("forkserver")
            if start_method == "forkserver" and start_forkserver()
            else multiprocessing.get_context("spawn")
        )
        self._workers: list[_Worker] = []
        self._contents = SegmentPool()
        # Content segments of finished batches that some worker may still map.
        self._retired: set[str] = set()
        # Result segments mapped here, with their writer, until nothing views them: those
        # of the current batch, tried at every dispatch, and older ones that something still
        # views (replies kept by the ServerApp), tried once a batch.
        self._reading: list[tuple[_Worker, SharedMemory]] = []
        self._held: list[tuple[_Worker, SharedMemory]] = []

    @property
    def num_workers(self) -> int:
        return self._num_workers

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main,
            args=(child, self._app_pickle, self._run_id, self._run_config, self._working_dir),
            name=self._process_name,
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _await_ready(self, workers: list[_Worker]) -> None:
        deadline = time.monotonic() + self._start_timeout
        for worker in workers:
            remaining = deadline - time.monotonic()
            if not worker.conn.poll(max(remaining, 0.0)):
                raise ExecutionError(f"a worker did not start within {self._start_timeout} s")
            try:
                kind, detail = worker.conn.recv()
            except EOFError:
                worker.process.join(timeout=5)
                raise ExecutionError(
                    f"a worker {_describe_exit(worker.process.exitcode)} while starting; "
                    "a script that runs a simulation must guard it with "
                    "`if __name__ == '__main__':`"
                ) from None
            if kind == "load_error":
                raise AppLoadError(f"worker could not load the ClientApp: {detail}")
            worker.ready = True

    def start(self, *, wait: bool = True) -> None:
        """Start the workers; with ``wait``, until they loaded the app.

        Without ``wait`` this returns at once, and the first :meth:`run` waits for them
        (and raises what :meth:`start` would have): a caller has other work to do while
        the workers load the app.

        Raises
        ------
        AppLoadError
            If a worker cannot load the ClientApp.
        ExecutionError
            If a worker does not start within ``start_timeout`` or exits while starting.
        """
        if self._started:
            return
        self._started = True
        try:
            self._refill(wait=wait)
        except BaseException:
            self.close()
            raise

    def _refill(self, *, wait: bool = True) -> None:
        """Start workers up to ``num_workers``; with ``wait``, until every worker loaded
        the app. A worker that cannot is stopped (and started again by the next call).

        Raises
        ------
        AppLoadError
            If a worker cannot load the ClientApp.
        ExecutionError
            If a worker does not start in time or exits while starting.
        """
        self._workers.extend(self._spawn() for _ in range(self._num_workers - len(self._workers)))
        starting = [w for w in self._workers if not w.ready]
        if not wait or not starting:
            return
        try:
            self._await_ready(starting)
        except BaseException:
            for worker in starting:
                _stop(worker, kill=True)
                self._workers.remove(worker)
            raise

    def _replace(self, worker: _Worker) -> None:
        _stop(worker, kill=True)
        for name in worker.owned:
            _unlink(name)
        self._workers.remove(worker)
        self._reclaim()
        if not self._lazy_restart:
            self._refill()

    def kill(self) -> None:
        """Kill the worker processes now; the calls they run end with ``WORKER_CRASHED``
        error replies. Unlike every other method, it may be called from any thread (to
        stop a call that :meth:`run` waits for)."""
        for worker in list(self._workers):
            with contextlib.suppress(OSError, ValueError):  # ended or closed meanwhile
                worker.process.kill()

    def run(self, tasks: Sequence[Task], timeout: float | None = None) -> Iterator[TaskResult]:
        """See :meth:`Executor.run`.

        Raises
        ------
        ExecutionError
            If the executor was not started, or a worker started again (lazily) does not
            start in time.
        AppLoadError
            If a worker started again cannot load the ClientApp.
        """
        if not self._started:
            raise ExecutionError("ProcessExecutor.run() called before start()")
        self._close_held()
        # Workers started lazily, or without waiting, load the app before the timeout
        # starts: it bounds the calls, not the loading.
        self._refill()
        contents, segments = self._pack_contents(tasks)
        aggregators, held = self._pack_aggregators(tasks)
        segments += held
        deadline = None if timeout is None else time.monotonic() + timeout
        position = {task.index: i for i, task in enumerate(tasks)}
        queue = collections.deque(range(len(tasks)))
        done = [False] * len(tasks)
        oldest = 0
        # Bound how far dispatch runs ahead of the oldest unfinished task, so a consumer
        # merging results in task order buffers at most a few partial aggregates.
        max_ahead = 2 * self._num_workers

        def feed() -> None:
            """Give each idle worker the next task, within ``max_ahead`` of ``oldest``;
            start again workers that died mid-batch (replaced lazily)."""
            if queue:
                self._refill()
            for worker in self._workers:
                if worker.task is None and queue and queue[0] < oldest + max_ahead:
                    self._dispatch(worker, tasks[queue.popleft()], contents, aggregators)

        try:
            while oldest < len(tasks):
                feed()
                busy = [w for w in self._workers if w.task is not None]
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], remaining)
                results = (
                    [r for r in (self._collect(w, ready) for w in busy) if r is not None]
                    if ready
                    else self._expire(busy, queue, tasks, timeout)
                )
                for result in results:
                    done[position[result.index]] = True
                while oldest < len(tasks) and done[oldest]:
                    oldest += 1
                # The workers that answered get their next task before the consumer takes
                # the results in: for replies that come back one by one, the consumer's
                # work is as long as the calls', and the workers would wait through it.
                feed()
                yield from results
        finally:
            self._drain()
            self._retired.update(segments)
            self._detach()

    def _pack_contents(self, tasks: Sequence[Task]) -> tuple[dict[int, Payload], list[str]]:
        contents: dict[int, Payload] = {}
        segments: list[str] = []
        for task in tasks:
            for call in task.calls:
                content = call.message.content
                if id(content) in contents:
                    continue
                payload, segment = pack(content, self._contents)
                contents[id(content)] = payload
                if segment is not None:
                    segments.append(segment.name)
        return contents, segments

    def _pack_aggregators(self, tasks: Sequence[Task]) -> tuple[dict[int, Payload], list[str]]:
        """Each task's aggregator, by task index, packed as contents are: one that holds
        arrays (central DP's keeps the round's global arrays) crosses in shared memory,
        not through the pipe. Tasks whose aggregators pickle alike (a batch's empty copies
        of one) share one payload: each worker still unpacks its own copy."""
        packed: dict[int, Payload] = {}
        alike: dict[tuple[bytes, tuple[int, ...]], Payload] = {}
        segments: list[str] = []
        # Arrays are compared by identity, not pickled and hashed each time: the buffers
        # are kept until the end, so that no id is reused by another array meanwhile.
        kept: list[pickle.PickleBuffer] = []
        for task in tasks:
            if task.aggregator is None:
                continue
            buffers: list[pickle.PickleBuffer] = []
            meta = pickle.dumps(task.aggregator, protocol=5, buffer_callback=buffers.append)
            kept.extend(buffers)
            key = (meta, tuple(id(buffer.raw().obj) for buffer in buffers))
            payload = alike.get(key)
            if payload is None:
                payload, segment = pack(task.aggregator, self._contents)
                alike[key] = payload
                if segment is not None:
                    segments.append(segment.name)
            packed[task.index] = payload
        return packed, segments

    def _dispatch(
        self,
        worker: _Worker,
        task: Task,
        contents: dict[int, Payload],
        aggregators: dict[int, Payload],
    ) -> None:
        self._close_read()
        keys = {id(call.message.content) for call in task.calls}
        wire: list[_WireCall] = [
            (c.message.metadata, id(c.message.content), c.node_id, c.node_config, c.state)
            for c in task.calls
        ]
        aggregator = aggregators.get(task.index)
        sent = {k: contents[k] for k in keys}
        worker.attached.update(p.segment for p in sent.values() if p.segment is not None)
        if aggregator is not None and aggregator.segment is not None:
            worker.attached.add(aggregator.segment)
        worker.task = task
        # A worker that died (or was killed) meanwhile: its sentinel says so, then _collect.
        with contextlib.suppress(OSError):
            worker.conn.send(("task", task.index, wire, sent, aggregator, worker.take_released()))

    def _close_read(self) -> None:
        """Close the result segments nothing views any more; their writers may reuse them."""
        self._reading = _close_unviewed(self._reading)

    def _close_held(self) -> None:
        """Move the batch's result segments still viewed aside, and retry the older ones."""
        self._held = _close_unviewed(self._held + self._reading)
        self._reading = []

    def _detached(self, worker: _Worker, closed: list[str]) -> None:
        worker.attached.difference_update(closed)
        self._reclaim()

    def _reclaim(self) -> None:
        """Return to the pool the retired content segments no worker maps any more."""
        mapped = set().union(*(w.attached for w in self._workers))
        for name in self._retired - mapped:
            self._contents.release(name)
        self._retired &= mapped

    def _detach(self) -> None:
        """Ask the idle workers that map contents to let go of them, so they can be reused."""
        self._close_held()
        asked = []
        for worker in [w for w in self._workers if w.task is None and w.attached]:
            try:
                worker.conn.send(("detach", worker.take_released()))
            except OSError:
                self._replace(worker)
            else:
                asked.append(worker)
        for worker in asked:
            try:
                _, closed = worker.conn.recv()
            except (EOFError, OSError):
                self._replace(worker)
                continue
            self._detached(worker, closed)

    def _collect(self, worker: _Worker, ready: list[Any]) -> TaskResult | None:
        task = worker.task
        assert task is not None
        if worker.conn in ready:
            try:
                _, index, payload, num_calls, closed = worker.conn.recv()
            except (EOFError, OSError):
                pass
            else:
                worker.task = None
                self._detached(worker, closed)
                return self._unpack_result(worker, index, payload, num_calls)
        if worker.process.sentinel in ready or not worker.process.is_alive():
            worker.process.join(timeout=5)  # its exit status
            code = worker.process.exitcode
            worker.task = None
            self._replace(worker)
            reason = f"the ClientApp's worker process {_describe_exit(code)}"
            return _failed(task, ErrorCode.WORKER_CRASHED, reason)
        return None

    def _unpack_result(
        self, worker: _Worker, index: int, payload: Payload, num_calls: int
    ) -> TaskResult:
        segment = None
        if payload.segment is not None:
            segment = attach(payload.segment)
            worker.owned.add(segment.name)
            self._reading.append((worker, segment))
        aggregator, replies, states, timings = unpack(payload, segment)
        return TaskResult(index, aggregator, replies, states, num_calls, timings)

    def _expire(
        self,
        busy: list[_Worker],
        queue: collections.deque[int],
        tasks: Sequence[Task],
        timeout: float | None,
    ) -> list[TaskResult]:
        results = []
        limit = "its deadline" if timeout is None else f"its deadline of {timeout:g} s"
        reason = f"the ClientApp call overran {limit}; its worker process was killed"
        for worker in busy:
            task = worker.task
            assert task is not None
            worker.task = None
            self._replace(worker)
            results.append(_failed(task, ErrorCode.TIMEOUT, reason))
        while queue:
            results.append(
                _failed(tasks[queue.popleft()], ErrorCode.TIMEOUT, "not run before the timeout")
            )
        return results

    def _drain(self) -> None:
        """Forget tasks abandoned by a consumer that stopped early."""
        for worker in list(self._workers):
            if worker.task is not None:
                worker.task = None
                self._replace(worker)

    def close(self) -> None:
        self._started = False
        for worker in self._workers:
            _stop(worker, kill=False)
            # A worker that was killed left its result segments behind.
            for name in worker.owned:
                _unlink(name)
        self._workers = []
        self._contents.close()
        self._retired = set()
        # Workers unlinked their result segments on the way out; what still views one here
        # keeps its mapping alive.
        for _, segment in self._held + self._reading:
            if not release(segment, unlink=False):
                abandon(segment)
        self._reading = []
        self._held = []


def _stop(worker: _Worker, *, kill: bool) -> None:
    if not kill:
        with contextlib.suppress(OSError):
            worker.conn.send(None)
        worker.process.join(timeout=5)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join(timeout=5)
    worker.conn.close()


def _close_unviewed(
    segments: list[tuple[_Worker, SharedMemory]],
) -> list[tuple[_Worker, SharedMemory]]:
    """Close the segments nothing views, noting them for their writers; return the others."""
    still_viewed = []
    for worker, segment in segments:
        if release(segment, unlink=False):
            worker.released.append(segment.name)
        else:
            still_viewed.append((worker, segment))
    return still_viewed


def _unlink(name: str) -> None:
    """Unlink a segment by name, if it still exists."""
    try:
        segment = attach(name)
    except FileNotFoundError:
        return
    release(segment, unlink=True)
