"""The worker side of :class:`~corolla.execution.ProcessExecutor`: a spawned process that
loads the ClientApp once, then runs the tasks it is sent on its pipe.

A task's message contents lie in shared memory the executor wrote (mapped here through a
:class:`SegmentCache`); the worker runs the calls with :func:`execute_task` and sends
back the replies, changed node states and partial aggregate, their arrays written into a
segment of its own :class:`SegmentPool`, which the executor hands back for reuse once
nothing views it. See ``_process`` for the messages on the pipe.

A worker runs in the working directory it is given, and ends itself once its parent is
gone: a worker busy in a ClientApp call (or hung in one) would not notice otherwise, and
would outlive a node or a simulation killed with SIGKILL.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

from ..core import AppLoadError, Message
from ..project import ComponentRef
from ..tuning import array_pages_for_this_machine, keep_freed_memory, quiet_garbage_collector
from ._executor import Call, Task, execute_task
from ._shm import INLINE_LIMIT, SegmentCache, SegmentPool, carve, carved_size, pack

__all__ = ["shared_workspace", "worker_main"]


def worker_main(
    conn: Connection,
    app_pickle: bytes,
    run_id: int,
    run_config: dict[str, Any],
    working_dir: str | None = None,
) -> None:
    """The worker process: load the app, say so, then serve tasks until told to stop."""
    _exit_with_parent()
    keep_freed_memory()
    try:
        if working_dir is not None:
            os.makedirs(working_dir, exist_ok=True)
            os.chdir(working_dir)
        source = pickle.loads(app_pickle)
        app = source.load() if isinstance(source, ComponentRef) else source
        if not callable(app):
            raise AppLoadError(f"{source!r} did not give a callable ClientApp")
    except BaseException as exc:
        conn.send(("load_error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    conn.send(("ready", os.getpid()))
    # A worker lives for the run: what it loaded stays, and each call's objects go at once.
    quiet_garbage_collector()
    cache = SegmentCache()
    pool = SegmentPool()
    try:
        with array_pages_for_this_machine():
            _serve(conn, app, run_id, run_config, cache, pool)
    finally:
        cache.close()
        pool.close()


def _exit_with_parent() -> None:
    """End this process at once when the process that started it ends. Not the OS parent:
    a worker started through a fork server is the server's child, and the server outlives
    the node while a worker lives. multiprocessing's parent sentinel is a pipe the starting
    process holds open, closed by the kernel when it dies. The thread is not joined: it
    lasts as long as the process and holds nothing."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="corolla-parent-watch", daemon=True).start()


def _serve(
    conn: Connection,
    app: Callable[..., Any],
    run_id: int,
    run_config: dict[str, Any],
    cache: SegmentCache,
    pool: SegmentPool,
) -> None:
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        for name in request[-1]:
            pool.release(name)
        if request[0] == "detach":
            conn.send(("detached", cache.retain_only(set())))
            continue
        _, index, wire_calls, contents, aggregator_payload, _ = request
        loaded = {key: cache.load(payload) for key, payload in contents.items()}
        aggregator = cache.load(aggregator_payload) if aggregator_payload is not None else None
        in_use = [*contents.values(), *([aggregator_payload] if aggregator_payload else [])]
        closed = cache.retain_only({p.segment for p in in_use if p.segment is not None})
        calls = [
            Call(Message(loaded[key], metadata=meta), node_id, node_config, state)
            for meta, key, node_id, node_config, state in wire_calls
        ]
        workspace = shared_workspace(aggregator, pool)
        result = execute_task(app, Task(index, calls, aggregator), run_id, run_config)
        del calls, loaded, aggregator
        payload, _ = pack(
            (result.aggregator, result.replies, result.states, result.timings),
            pool,
            within=workspace,
        )
        if workspace is not None and payload.segment != workspace.name:
            pool.release(workspace.name)  # nothing was folded into it
        # Drop the task's objects before waiting for the next request, so that nothing here
        # views its contents when the executor asks for them back.
        del result
        conn.send(("result", index, payload, len(wire_calls), closed))


def shared_workspace(aggregator: Any, pool: SegmentPool) -> SharedMemory | None:
    """A pool segment the aggregator folds into, when it can say its accumulators' layout
    in advance (``workspace_layout``/``use_workspace``, as FedAvg's ``WeightedAverage``
    can): its partial aggregate then travels back without being copied, and the worker's
    accumulators are memory the pool reuses round after round."""
    layout_of = getattr(aggregator, "workspace_layout", None)
    layout = layout_of() if callable(layout_of) else None
    if not layout:
        return None
    size = carved_size(layout)
    if size < INLINE_LIMIT:
        return None
    segment = pool.acquire(size)
    aggregator.use_workspace(carve(segment, layout))
    return segment
