"""A node's run processes: one per run, at most a few, stopped when their run ends."""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from corolla.core import ArrayRecord, ConfigError, ConfigRecord, ErrorCode, Message, RecordDict
from corolla.project import ComponentRef
from corolla.runtime.node._run_processes import RunProcess, RunProcesses

APP = """
import os
import time

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    if message.content["config"]["hang"]:
        time.sleep(300)
    content = {"metrics": MetricRecord({"pid": os.getpid(), "run": context.run_id})}
    if "arrays" in message.content:
        content["arrays"] = ArrayRecord({"w": np.asarray(message.content["arrays"]["w"]) + 1})
    return Message(RecordDict(content), reply_to=message)
"""


@pytest.fixture
def app(tmp_path: Path) -> ComponentRef:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "pooled_app.py").write_text(textwrap.dedent(APP))
    return ComponentRef("pooled_app:app", str(root))


@pytest.fixture
def processes() -> Iterator[RunProcesses]:
    pool = RunProcesses(limit=2)
    try:
        yield pool
    finally:
        pool.close()


def _started(app: ComponentRef, run_id: int, tmp_path: Path) -> RunProcess:
    process = RunProcess(run_id, app, {}, tmp_path / f"run{run_id}")
    process.start()
    return process


def _call(process: RunProcess, hang: bool = False, padding: int = 0) -> Message:
    records: dict[str, ArrayRecord | ConfigRecord] = {"config": ConfigRecord({"hang": hang})}
    if padding:
        records["arrays"] = ArrayRecord({"w": np.zeros(padding, dtype=np.float32)})
    message = Message(RecordDict(records), dst_node_id=1, message_type="train")
    reply, _ = process.call(message, 1, {}, RecordDict(), timeout=120.0)
    return reply


def test_a_third_run_stops_the_process_least_recently_used(
    processes: RunProcesses, app: ComponentRef, tmp_path: Path
) -> None:
    # Arrange: runs 1 and 2 have processes, run 1 used last
    for run_id in (1, 2):
        assert processes.add(_started(app, run_id, tmp_path)) == []
    first = processes.get(1)
    assert first is not None

    # Act
    evicted = processes.add(_started(app, 3, tmp_path))

    # Assert
    assert evicted == [2]
    assert processes.get(2) is None
    assert _call(first).content["metrics"]["run"] == 1


def test_a_run_that_ends_has_its_call_killed_and_its_process_closed(
    processes: RunProcesses, app: ComponentRef, tmp_path: Path
) -> None:
    # Arrange: a call that hangs, and the end of its run announced from another thread
    process = _started(app, 7, tmp_path)
    processes.add(process)
    _call(process)  # started and answering
    ending = threading.Timer(0.5, processes.end, (7, "stopped by a user"))

    # Act
    ending.start()
    try:
        reply = _call(process, hang=True)
    finally:
        ending.cancel()
        ending.join()
    processes.close_ended()

    # Assert
    assert reply.error.code == ErrorCode.WORKER_CRASHED
    assert processes.ended(7) == "stopped by a user"
    assert processes.get(7) is None


def test_a_node_keeps_at_least_one_run_process() -> None:
    with pytest.raises(ConfigError):
        RunProcesses(limit=0)


def test_a_run_s_messages_and_replies_reuse_their_shared_memory(
    app: ComponentRef, tmp_path: Path
) -> None:
    # Arrange: messages whose content, and replies whose arrays, lie in shared memory
    process = _started(app, 9, tmp_path)
    executor = process._executor
    try:
        # Act: three messages, each reply let go before the next message
        for _ in range(3):
            assert not _call(process, padding=1_000_000).has_error()
        contents = set(executor._contents._free)
        (worker,) = executor._workers

        # Assert: one segment each way, written again for every message
        assert len(contents) == 1
        assert len(worker.owned) == 1
    finally:
        process.close()
