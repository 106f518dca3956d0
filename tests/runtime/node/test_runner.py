"""How a node serves its messages: each run's ClientApp in a process of its own, which may
exit, crash or hang without costing the node more than an error reply."""

from __future__ import annotations

import logging
import os
import textwrap
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from corolla.core import ArrayRecord, ConfigRecord, ErrorCode, Message, RecordDict
from corolla.runtime import GrpcGrid, Link, Node, NodeStatus, make_bundle
from corolla.runtime.node._runner import message_deadline
from corolla.state import DirectoryBlobStore
from corolla.transport import message_pb2

FAULTY_APP = """
import os
import signal
import sys
import time

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    do = str(message.content["config"]["do"])
    if do == "sys-exit":
        sys.exit(4)
    if do == "exit":
        os._exit(3)
    if do == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if do == "hang":
        time.sleep(300)
    count = int(context.state["counter"]["count"]) + 1 if "counter" in context.state else 1
    context.state = RecordDict({"counter": MetricRecord({"count": count})})
    content = {
        "metrics": MetricRecord({"pid": os.getpid(), "count": count}),
        "where": ConfigRecord({"cwd": os.getcwd()}),
    }
    if "arrays" in message.content:
        w = np.asarray(message.content["arrays"]["w"])
        content["arrays"] = ArrayRecord({"w": w + 1})
    return Message(RecordDict(content), reply_to=message)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "faulty_app").mkdir(parents=True)
    (root / "faulty_app" / "__init__.py").write_text("")
    (root / "faulty_app" / "client_app.py").write_text(FAULTY_APP)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "faulty-app"
            [tool.corolla.app]
            serverapp = "faulty_app.client_app:app"
            clientapp = "faulty_app.client_app:app"
            """
        )
    )
    return root


def _grid_for(link: Link, channel: grpc.Channel, app_dir: Path) -> GrpcGrid:
    blobs = DirectoryBlobStore(link.state_dir / "blobs")
    run = link.state.create_run(blobs.put(make_bundle(app_dir)), {})
    return GrpcGrid(channel, run.run_id, link.issue_run_secret(run.run_id))


def _wait_connected(node: Node) -> int:
    for _ in range(200):
        if node.status is NodeStatus.CONNECTED and node.node_id is not None:
            return node.node_id
        time.sleep(0.05)
    pytest.fail("the node did not connect within 10 s")


def _train(grid: GrpcGrid, node_id: int, do: str, w: np.ndarray | None = None) -> Message:
    records: dict[str, ArrayRecord | ConfigRecord] = {"config": ConfigRecord({"do": do})}
    if w is not None:
        records["arrays"] = ArrayRecord({"w": w})
    message = Message(RecordDict(records), dst_node_id=node_id, message_type="train")
    (reply,) = list(grid.receive(grid.send([message]), timeout=60))
    return reply


@pytest.mark.parametrize(
    ("do", "code", "says"),
    [
        ("sys-exit", ErrorCode.WORKER_CRASHED, "exited with status 4"),
        ("exit", ErrorCode.WORKER_CRASHED, "exited with status 3"),
        ("kill", ErrorCode.WORKER_CRASHED, "killed by signal 9 (SIGKILL)"),
        ("hang", ErrorCode.TIMEOUT, "overran its deadline of 2 s"),
    ],
)
def test_a_client_app_that_exits_crashes_or_hangs_costs_an_error_reply_and_nothing_more(
    link: Link,
    appio_channel: grpc.Channel,
    app_dir: Path,
    tmp_path: Path,
    do: str,
    code: ErrorCode,
    says: str,
) -> None:
    # Arrange: a node whose ClientApp calls may take 2 s
    grid = _grid_for(link, appio_channel, app_dir)
    with Node(link.fleet_address, tmp_path / "node", max_message_s=2.0) as node:
        node_id = _wait_connected(node)
        before = _train(grid, node_id, "count")

        # Act
        failed = _train(grid, node_id, do)
        after = _train(grid, node_id, "count")
        next_run = _train(_grid_for(link, appio_channel, app_dir), node_id, "count")
        online = link.state.get_node(node_id).online

    # Assert: an error reply that says what happened; the node served on, online, its
    # run's context state kept, in a new process
    assert failed.has_error()
    assert failed.error.code == code
    assert says in failed.error.reason
    assert online
    assert not after.has_error() and after.content["metrics"]["count"] == 2
    assert after.content["metrics"]["pid"] != before.content["metrics"]["pid"]
    assert not next_run.has_error() and next_run.content["metrics"]["count"] == 1


def test_a_run_s_client_app_runs_in_one_process_of_its_own_in_the_run_s_directory(
    link: Link, appio_channel: grpc.Channel, app_dir: Path, tmp_path: Path
) -> None:
    # Arrange: a model too large to travel inline
    grid = _grid_for(link, appio_channel, app_dir)
    w = np.arange(400_000, dtype=np.float32)

    # Act
    with Node(link.fleet_address, tmp_path / "node") as node:
        node_id = _wait_connected(node)
        replies = [_train(grid, node_id, "count", w) for _ in range(3)]

    # Assert: not the node's process, the same one for every message of the run
    pids = {int(r.content["metrics"]["pid"]) for r in replies}
    assert len(pids) == 1 and os.getpid() not in pids
    work = tmp_path / "node" / "runs" / str(grid.run_id) / "work"
    assert {r.content["where"]["cwd"] for r in replies} == {str(work.resolve())}
    assert [r.content["metrics"]["count"] for r in replies] == [1, 2, 3]
    for reply in replies:
        np.testing.assert_array_equal(reply.content["arrays"]["w"], w + 1)


def test_a_node_says_what_it_does(
    link: Link,
    appio_channel: grpc.Channel,
    app_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    grid = _grid_for(link, appio_channel, app_dir)
    with (
        caplog.at_level(logging.INFO, logger="corolla.runtime.node"),
        Node(link.fleet_address, tmp_path / "node") as node,
    ):
        node_id = _wait_connected(node)
        _train(grid, node_id, "count")
        _train(grid, node_id, "exit")

    lines = [r.getMessage() for r in caplog.records if r.name == "corolla.runtime.node"]
    assert f"node {node_id} registered with the link at {link.fleet_address}" in lines
    assert f"serving run {grid.run_id} (app faulty-app)" in lines
    answered = [line for line in lines if "answered in" in line]
    assert len(answered) == 1 and answered[0].startswith(f"run {grid.run_id}: train message")
    (failed,) = [line for line in lines if "failed in" in line]
    assert "WORKER_CRASHED (8): node" in failed and "exited with status 3" in failed
    assert "\n" not in failed


def _metadata(ttl: float, created_at: float) -> message_pb2.Metadata:
    return message_pb2.Metadata(ttl=ttl, created_at=created_at)


def test_a_message_s_deadline_is_what_is_left_of_its_ttl_at_most_the_node_s_cap() -> None:
    assert message_deadline(_metadata(100.0, 1000.0), now=1030.0, cap=3600.0) == 70.0
    assert message_deadline(_metadata(43_200.0, 1000.0), now=1030.0, cap=3600.0) == 3600.0
    # A clock behind the sender's counts no age; an expired message has no time left.
    assert message_deadline(_metadata(100.0, 1000.0), now=990.0, cap=3600.0) == 100.0
    assert message_deadline(_metadata(100.0, 1000.0), now=1200.0, cap=3600.0) <= 0
