"""The process backend: worker processes that load the ClientApp once and run blocks of calls.

Each worker is a spawned process connected by a pipe. Message contents are placed in
shared memory once per batch (see ``_shm``), so a global model is never pickled per node.
Workers fold successful replies into the task's aggregator and send back only the partial
aggregate. A worker that dies or overruns the timeout is killed and replaced; the calls it
held become error replies, and the run goes on.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import pickle
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from typing import Any

from ..core import Error, ErrorCode, Message, RecordDict, UserConfigValue
from ..core._errors import AppLoadError, ConfigError, ExecutionError
from ..project import ComponentRef
from ._executor import Call, Executor, Task, TaskResult, execute_task
from ._shm import Payload, SegmentCache, pack, release, unpack

__all__ = ["ProcessExecutor"]

AppSource = ComponentRef | Callable[..., Any]

# (metadata, content key, node id, node config, state)
_WireCall = tuple[Any, int, int, Mapping[str, UserConfigValue], RecordDict]


def _worker_main(
    conn: Connection, app_pickle: bytes, run_id: int, run_config: dict[str, Any]
) -> None:
    try:
        source = pickle.loads(app_pickle)
        app = source.load() if isinstance(source, ComponentRef) else source
        if not callable(app):
            raise AppLoadError(f"{source!r} did not give a callable ClientApp")
    except BaseException as exc:
        conn.send(("load_error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    conn.send(("ready", os.getpid()))
    cache = SegmentCache()
    while True:
        try:
            request = conn.recv()
        except EOFError:
            break
        if request is None:
            break
        index, wire_calls, contents, aggregator_data = request
        loaded = {key: cache.load(payload) for key, payload in contents.items()}
        cache.retain_only({p.segment for p in contents.values() if p.segment is not None})
        calls = [
            Call(Message(loaded[key], metadata=meta), node_id, node_config, state)
            for meta, key, node_id, node_config, state in wire_calls
        ]
        aggregator = pickle.loads(aggregator_data) if aggregator_data is not None else None
        result = execute_task(app, Task(index, calls, aggregator), run_id, run_config)
        del calls, loaded
        payload, segment = pack((result.aggregator, result.replies, result.states))
        conn.send(("result", index, payload, len(wire_calls)))
        if segment is not None:
            segment.close()
    cache.close()


class _Worker:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.task: Task | None = None


def _failed(task: Task, code: ErrorCode, reason: str) -> TaskResult:
    replies = [
        Message(
            error=Error(int(code), f"node {call.node_id}: {reason}"),
            reply_to=call.message,
        )
        for call in task.calls
    ]
    return TaskResult(task.index, None, replies, {}, len(task.calls))


class ProcessExecutor(Executor):
    """Runs calls in ``num_workers`` spawned processes (default: one per core).

    Parameters
    ----------
    client_app
        A :class:`ComponentRef` each worker imports, or a picklable ClientApp (one whose
        handlers are module-level functions).
    start_timeout
        Seconds a worker may take to start and load the app.

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
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._unclosed: list[SharedMemory] = []

    @property
    def num_workers(self) -> int:
        return self._num_workers

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._app_pickle, self._run_id, self._run_config),
            name="corolla-sim-worker",
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
                raise ExecutionError(
                    f"a worker exited while starting (exit code {worker.process.exitcode}); "
                    "a script that runs a simulation must guard it with "
                    "`if __name__ == '__main__':`"
                ) from None
            if kind == "load_error":
                raise AppLoadError(f"worker could not load the ClientApp: {detail}")

    def start(self) -> None:
        if self._workers:
            return
        self._workers = [self._spawn() for _ in range(self._num_workers)]
        try:
            self._await_ready(self._workers)
        except BaseException:
            self.close()
            raise

    def _replace(self, worker: _Worker) -> None:
        _stop(worker, kill=True)
        fresh = self._spawn()
        index = self._workers.index(worker)
        self._workers[index] = fresh
        self._await_ready([fresh])

    def run(self, tasks: Sequence[Task], timeout: float | None = None) -> Iterator[TaskResult]:
        if not self._workers:
            raise ExecutionError("ProcessExecutor.run() called before start()")
        contents, segments = _pack_contents(tasks)
        deadline = None if timeout is None else time.monotonic() + timeout
        position = {task.index: i for i, task in enumerate(tasks)}
        queue = collections.deque(range(len(tasks)))
        done = [False] * len(tasks)
        oldest = 0
        # Bound how far dispatch runs ahead of the oldest unfinished task, so a consumer
        # merging results in task order buffers at most a few partial aggregates.
        max_ahead = 2 * self._num_workers
        try:
            while oldest < len(tasks):
                for worker in self._workers:
                    if worker.task is None and queue and queue[0] < oldest + max_ahead:
                        self._dispatch(worker, tasks[queue.popleft()], contents)
                busy = [w for w in self._workers if w.task is not None]
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], remaining)
                results = (
                    [r for r in (self._collect(w, ready) for w in busy) if r is not None]
                    if ready
                    else self._expire(busy, queue, tasks)
                )
                for result in results:
                    done[position[result.index]] = True
                    yield result
                while oldest < len(tasks) and done[oldest]:
                    oldest += 1
        finally:
            for segment in segments:
                release(segment, unlink=True)
            self._drain()

    def _dispatch(self, worker: _Worker, task: Task, contents: dict[int, Payload]) -> None:
        keys = {id(call.message.content) for call in task.calls}
        wire: list[_WireCall] = [
            (c.message.metadata, id(c.message.content), c.node_id, c.node_config, c.state)
            for c in task.calls
        ]
        aggregator = pickle.dumps(task.aggregator) if task.aggregator is not None else None
        worker.task = task
        worker.conn.send((task.index, wire, {k: contents[k] for k in keys}, aggregator))

    def _collect(self, worker: _Worker, ready: list[Any]) -> TaskResult | None:
        task = worker.task
        assert task is not None
        if worker.conn in ready:
            try:
                _, index, payload, num_calls = worker.conn.recv()
            except (EOFError, OSError):
                pass
            else:
                worker.task = None
                return self._unpack_result(index, payload, num_calls)
        if worker.process.sentinel in ready or not worker.process.is_alive():
            code = worker.process.exitcode
            worker.task = None
            self._replace(worker)
            return _failed(
                task, ErrorCode.WORKER_CRASHED, f"simulation worker died (exit code {code})"
            )
        return None

    def _unpack_result(self, index: int, payload: Payload, num_calls: int) -> TaskResult:
        segment = None
        if payload.segment is not None:
            segment = SharedMemory(name=payload.segment)
        aggregator, replies, states = unpack(payload, segment)
        if segment is not None:
            segment.unlink()
            self._unclosed.append(segment)
        return TaskResult(index, aggregator, replies, states, num_calls)

    def _expire(
        self, busy: list[_Worker], queue: collections.deque[int], tasks: Sequence[Task]
    ) -> list[TaskResult]:
        results = []
        for worker in busy:
            task = worker.task
            assert task is not None
            worker.task = None
            self._replace(worker)
            results.append(_failed(task, ErrorCode.TIMEOUT, "ClientApp call timed out"))
        while queue:
            results.append(
                _failed(tasks[queue.popleft()], ErrorCode.TIMEOUT, "not run before the timeout")
            )
        return results

    def _drain(self) -> None:
        """Forget tasks abandoned by a consumer that stopped early."""
        for worker in self._workers:
            if worker.task is not None:
                worker.task = None
                self._replace(worker)
        self._unclosed = [s for s in self._unclosed if not release(s, unlink=False)]

    def close(self) -> None:
        for worker in self._workers:
            _stop(worker, kill=False)
        self._workers = []
        self._unclosed = [s for s in self._unclosed if not release(s, unlink=False)]


def _stop(worker: _Worker, *, kill: bool) -> None:
    if not kill:
        try:
            worker.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        worker.process.join(timeout=5)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join(timeout=5)
    worker.conn.close()


def _pack_contents(tasks: Sequence[Task]) -> tuple[dict[int, Payload], list[SharedMemory]]:
    contents: dict[int, Payload] = {}
    segments: list[SharedMemory] = []
    for task in tasks:
        for call in task.calls:
            content = call.message.content
            if id(content) in contents:
                continue
            payload, segment = pack(content)
            contents[id(content)] = payload
            if segment is not None:
                segments.append(segment)
    return contents, segments
