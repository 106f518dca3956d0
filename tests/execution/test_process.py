"""The process backend: the shared memory a worker folds replies into, workers that die,
hang or are killed, their working directory, and segments reused across batches."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corolla.core import (
    AppLoadError,
    ArrayRecord,
    ConfigRecord,
    Context,
    ErrorCode,
    Message,
    MetricRecord,
    RecordDict,
)
from corolla.execution import Call, ProcessExecutor, Task, execute_task
from corolla.execution._shm import SegmentCache, SegmentPool, pack
from corolla.execution._worker import shared_workspace
from corolla.project import ComponentRef
from corolla.strategy import WeightedAverage, array_spec


@pytest.fixture
def pool() -> Any:
    pool = SegmentPool()
    yield pool
    pool.close()


def _reply(w: np.ndarray, weight: int) -> RecordDict:
    return RecordDict(
        {"arrays": ArrayRecord({"w": w}), "metrics": MetricRecord({"num-examples": weight})}
    )


def test_a_fedavg_partial_is_folded_in_shared_memory_and_packed_where_it_lies(pool) -> None:
    # Arrange
    model = ArrayRecord({"w": np.zeros(50_000, dtype=np.float32)})
    aggregator = WeightedAverage(spec=array_spec(model))
    segment = shared_workspace(aggregator, pool)
    assert segment is not None

    # Act
    aggregator.add(_reply(np.full(50_000, 2.0, dtype=np.float32), 1), 1)
    aggregator.add(_reply(np.full(50_000, 5.0, dtype=np.float32), 2), 2)
    payload, used = pack(aggregator, pool, within=segment)

    # Assert: the root merges the partial straight from the worker's segment.
    cache = SegmentCache()
    try:
        partial = cache.load(payload)
        root = WeightedAverage()
        root.merge(partial)
        del partial
        mean = root.arrays()
        assert used is segment
        assert mean is not None and np.all(mean["w"] == np.float32(4.0))
    finally:
        cache.close()
    del aggregator


def test_no_workspace_for_small_layouts_or_aggregators_without_one(pool) -> None:
    small = WeightedAverage(spec=array_spec(ArrayRecord({"w": np.zeros(10, np.float32)})))

    assert shared_workspace(small, pool) is None
    assert shared_workspace(WeightedAverage(), pool) is None  # layout unknown
    assert shared_workspace(object(), pool) is None
    assert shared_workspace(None, pool) is None


def test_a_folded_reply_is_let_go_before_the_next_call() -> None:
    # Arrange: a ClientApp that notes whether the update it returned last time still lives.
    previous: list[weakref.ref[np.ndarray]] = []
    alive_at_next_call: list[bool] = []

    def client_app(message: Message, context: Context) -> Message:
        if previous:
            alive_at_next_call.append(previous[-1]() is not None)
        update = np.ones(10, dtype=np.float32)
        previous.append(weakref.ref(update))
        content = RecordDict(
            {"arrays": ArrayRecord({"w": update}), "metrics": MetricRecord({"num-examples": 1})}
        )
        return Message(content, reply_to=message)

    spec = array_spec(ArrayRecord({"w": np.zeros(10, np.float32)}))
    calls = [
        Call(Message(RecordDict(), dst_node_id=n, message_type="train"), n, {}, RecordDict())
        for n in (1, 2, 3)
    ]

    # Act
    result = execute_task(client_app, Task(0, calls, WeightedAverage(spec=spec)), 1, {})

    # Assert
    assert result.aggregator is not None and result.aggregator.count == 3
    assert alive_at_next_call == [False, False]


def _call(do: str, node_id: int = 1) -> Call:
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": np.zeros(100_000, dtype=np.float32)}),
            "config": ConfigRecord({"do": do}),
        }
    )
    message = Message(content, dst_node_id=node_id, message_type="train")
    return Call(message, node_id, {}, RecordDict())


def _one(executor: ProcessExecutor, do: str, timeout: float | None = 60.0) -> Message:
    [result] = list(executor.run([Task(0, [_call(do)])], timeout=timeout))
    [reply] = result.replies
    return reply


@pytest.fixture(params=["spawn", "forkserver"])
def lazy(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ProcessExecutor]:
    executor = ProcessExecutor(
        ComponentRef("tests.execution.apps:app"),
        num_workers=1,
        working_dir=tmp_path / "work",
        lazy_restart=True,
        start_method=request.param,
    )
    executor.start()
    try:
        yield executor
    finally:
        executor.close()


@pytest.mark.parametrize(
    ("do", "code", "says"),
    [
        ("exit", ErrorCode.WORKER_CRASHED, "exited with status 3"),
        ("sys-exit", ErrorCode.WORKER_CRASHED, "exited with status 4"),
        ("kill", ErrorCode.WORKER_CRASHED, "killed by signal 9 (SIGKILL)"),
        ("hang", ErrorCode.TIMEOUT, "overran its deadline of 2 s"),
    ],
)
def test_a_call_whose_process_dies_or_hangs_says_how_and_the_next_call_gets_a_new_one(
    lazy: ProcessExecutor, do: str, code: ErrorCode, says: str
) -> None:
    # Arrange
    before = _one(lazy, "train")

    # Act
    failed = _one(lazy, do, timeout=2.0)
    after = _one(lazy, "train")

    # Assert
    assert failed.has_error() and failed.error.code == code
    assert says in failed.error.reason
    assert not after.has_error()
    assert after.content["where"]["pid"] != before.content["where"]["pid"]
    np.testing.assert_array_equal(after.content["arrays"]["w"], np.ones(100_000, np.float32))


def test_workers_run_in_the_working_directory_and_keep_their_process_across_calls(
    lazy: ProcessExecutor, tmp_path: Path
) -> None:
    first = _one(lazy, "train")
    second = _one(lazy, "train")

    assert first.content["where"]["cwd"] == str((tmp_path / "work").resolve())
    assert first.content["where"]["pid"] == second.content["where"]["pid"]


def test_a_worker_has_its_next_task_before_the_consumer_takes_a_result_in(
    lazy: ProcessExecutor,
) -> None:
    # Arrange: three tasks for one worker
    tasks = [Task(i, [_call("train", node_id=i + 1)]) for i in range(3)]
    running = []

    # Act: as each result comes, note whether the worker already runs another task
    for _ in lazy.run(tasks, timeout=60.0):
        running.append(lazy._workers[0].task is not None)

    # Assert: it never waits for the consumer while tasks remain
    assert running == [True, True, False]


def test_a_lazy_executor_starts_no_worker_until_the_next_batch(lazy: ProcessExecutor) -> None:
    # Act
    _one(lazy, "exit")

    # Assert: the worker that died is not replaced by itself
    assert lazy._workers == []
    assert not _one(lazy, "train").has_error()
    assert len(lazy._workers) == 1


def test_kill_from_another_thread_ends_the_call_it_waits_for(lazy: ProcessExecutor) -> None:
    # Arrange: kill the worker once it runs the hanging call
    started = _one(lazy, "train").content["where"]["pid"]
    killer = threading.Timer(0.5, lazy.kill)

    # Act
    killer.start()
    try:
        reply = _one(lazy, "hang", timeout=120.0)
    finally:
        killer.cancel()
        killer.join()

    # Assert
    assert reply.error.code == ErrorCode.WORKER_CRASHED
    assert "killed by signal 9" in reply.error.reason
    assert _one(lazy, "train").content["where"]["pid"] != started


def test_an_eager_executor_replaces_a_dead_worker_at_once() -> None:
    executor = ProcessExecutor(ComponentRef("tests.execution.apps:app"), num_workers=1)
    executor.start()
    try:
        _one(executor, "exit")

        assert len(executor._workers) == 1 and executor._workers[0].process.is_alive()
    finally:
        executor.close()


def test_segments_are_reused_from_batch_to_batch_both_ways(lazy: ProcessExecutor) -> None:
    # Act: three calls, their contents and replies in shared memory, each reply dropped
    # before the next call
    _one(lazy, "train")
    contents = set(lazy._contents._free)
    for _ in range(2):
        _one(lazy, "train")

    # Assert: the contents went into the segment the first batch used, and the worker
    # wrote every reply into one segment
    assert contents and set(lazy._contents._free) == contents
    assert len(lazy._workers[0].owned) == 1


def test_a_start_that_does_not_wait_reports_a_load_error_at_each_run() -> None:
    executor = ProcessExecutor(
        ComponentRef("tests.execution.no_such_module:app"), num_workers=1, lazy_restart=True
    )
    executor.start(wait=False)  # the worker loads the app meanwhile
    try:
        for _ in range(2):
            with pytest.raises(AppLoadError, match="no_such_module"):
                _one(executor, "train")
    finally:
        executor.close()


def test_closing_unlinks_the_result_segments_of_a_killed_worker(lazy: ProcessExecutor) -> None:
    # Arrange: a worker that wrote a reply into a segment of its own, then was killed
    _one(lazy, "train")
    (written,) = lazy._workers[0].owned
    lazy.kill()
    lazy._workers[0].process.join(10)

    # Act
    lazy.close()

    # Assert
    with pytest.raises(FileNotFoundError):
        SharedMemory(name=written)


def test_the_time_a_worker_takes_to_load_the_app_does_not_count_against_the_timeout() -> None:
    executor = ProcessExecutor(
        ComponentRef("tests.execution.slow_app:app"), num_workers=1, lazy_restart=True
    )
    executor.start(wait=False)
    try:
        reply = _one(executor, "train", timeout=1.0)
    finally:
        executor.close()

    assert not reply.has_error()


_STARTER = """
import sys, time
from corolla.execution import ProcessExecutor
from corolla.project import ComponentRef

executor = ProcessExecutor(
    ComponentRef("tests.execution.apps:app"), num_workers=1, start_method=sys.argv[1]
)
executor.start()
print(executor._workers[0].process.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_a_worker_ends_when_the_process_that_started_it_is_killed(
    start_method: str, tmp_path: Path
) -> None:
    # Arrange: a process with a started worker (through a fork server, the worker is the
    # server's child, not the starter's)
    starter = subprocess.Popen(
        [sys.executable, "-c", _STARTER, start_method],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert starter.stdout is not None
        worker = int(starter.stdout.readline())

        # Act
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)

        # Assert: the worker is gone within seconds
        deadline = time.monotonic() + 30
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(worker)
    finally:
        starter.kill()
        starter.wait(10)


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except FileNotFoundError:
        return False
    return state != "Z"
