"""Faults, end to end: nodes and the link killed with SIGKILL, as real processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from corolla.core import ErrorCode, Event, Message, MetricRecord, RecordDict
from corolla.runtime import ControlClient
from corolla.runtime.node import NodeStore
from corolla.state import SqliteLinkState
from corolla.transport import (
    bearer_metadata,
    channel_options,
    fleet_pb2,
    fleet_pb2_grpc,
    message_from_proto,
    message_to_proto,
    run_pb2,
)

from .test_e2e import Processes, _free_port

WAIT_S = 60.0
POLL_S = 0.1

CLIENT_APP = """
import os
import time

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    count = int(context.state["counter"]["count"]) + 1 if "counter" in context.state else 1
    hang = str(context.node_config.get("hang-file", ""))
    if count == 2 and hang and os.path.exists(hang):
        # Round 2 of the node to kill: say so, then hang until killed.
        with open(hang + ".started", "w") as marker:
            marker.write(str(os.getpid()))
        time.sleep(300)
    context.state = RecordDict({"counter": MetricRecord({"count": count})})
    arrays = message.content["arrays"]
    update = ArrayRecord({name: np.asarray(a) + 1 for name, a in arrays.items()})
    metrics = MetricRecord({"num-examples": 1})
    return Message(RecordDict({"arrays": update, "metrics": metrics}), reply_to=message)
"""

SERVER_APP = """
import numpy as np

from corolla.core import ArrayRecord
from corolla.server import ServerApp
from corolla.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=3,
        min_available_nodes=3,
        min_train_replies=2,
        seed=0,
    )
    strategy.start(grid, ArrayRecord({"w": np.zeros(3, dtype=np.float32)}), num_rounds=3)
"""

ONE_MESSAGE_APP = """
from corolla.core import Message, MetricRecord, RecordDict
from corolla.server import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    (node_id,) = grid.wait_for_nodes(1, 60)
    content = RecordDict({"metrics": MetricRecord({"x": 1})})
    ids = grid.send([Message(content, dst_node_id=node_id, message_type="train")])
    list(grid.receive(ids, timeout=120))
"""


def _app(root: Path, module: str, server: str, client: str = "", config: str = "") -> Path:
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "server_app.py").write_text(textwrap.dedent(server))
    (root / module / "client_app.py").write_text(textwrap.dedent(client))
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "{module}"
            [tool.corolla.app]
            serverapp = "{module}.server_app:app"
            clientapp = "{module}.client_app:app"
            [tool.corolla.app.config]
            """
        )
        + config
    )
    return root


def _until(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Poll ``check`` until it holds, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL_S) + 1):
        try:
            if check():
                return
        except ConnectionError:
            pass  # the link is still starting
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _start_link(
    processes: Processes, state: Path, fleet: int, control: int, heartbeat_s: float = 1.0
) -> None:
    processes.start(
        "link",
        "link",
        "--state",
        str(state),
        "--fleet-address",
        f"127.0.0.1:{fleet}",
        "--control-address",
        f"127.0.0.1:{control}",
        "--heartbeat-interval",
        str(heartbeat_s),
    )


def _online(client: ControlClient) -> list[int]:
    return [n.node_id for n in client.list_nodes() if n.status == 1]


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def test_a_node_killed_mid_round_goes_offline_at_once_and_rejoins_with_its_id_and_state(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: a link whose nodes heartbeat once an hour, so that only the end of its
    # Receive stream can tell that a node is gone; 3 nodes, node 2 hangs in its round-2
    # training
    fleet, control = _free_port(), _free_port()
    _start_link(processes, tmp_path / "link", fleet, control, heartbeat_s=3600)
    hang = tmp_path / "hang"
    hang.write_text("")
    node_args = []
    for i in range(3):
        args = ["node", "--link", f"127.0.0.1:{fleet}", "--state", str(tmp_path / f"node{i}")]
        args += ["--node-config", f"partition-id={i}"]
        if i == 2:
            args.append(f"hang-file={hang}")
        node_args.append(args)
    nodes = [processes.start(f"node{i}", *args) for i, args in enumerate(node_args)]
    app = _app(tmp_path / "app", "fault_app", SERVER_APP, CLIENT_APP)
    with ControlClient(f"127.0.0.1:{control}") as client:
        _until("3 nodes online", lambda: len(_online(client)) == 3)
        before = {n.node_id for n in client.list_nodes()}

        # Act: kill node 2 while it trains in round 2
        run = client.submit(app)
        started = Path(f"{hang}.started")
        _until("node 2 to start round 2", lambda: started.is_file() and started.read_text())
        client_app = int(started.read_text())
        nodes[2].send_signal(signal.SIGKILL)
        nodes[2].wait(10)
        hang.unlink()
        _until("node 2 to go offline", lambda: len(_online(client)) == 2)
        # Its ClientApp process, hung, ends by itself once its node is gone.
        _until("node 2's ClientApp process to exit", lambda: not _alive(client_app))
        offline = sorted(before - set(_online(client)))
        processes.start("node2-again", *node_args[2])
        _until("node 2 back online", lambda: len(_online(client)) == 3)
        events = [event for _, event in client.events(run.run_id, timeout=WAIT_S)]
        final = client.get_run(run.run_id)
        after = {n.node_id for n in client.list_nodes()}
        result = client.result(run.run_id)

    # Assert: round 2 went on with the 2 replies; the lost one was answered with an error
    assert final.status == run_pb2.RUN_STATUS_FINISHED, final.status_reason
    assert len(offline) == 1
    lost = offline[0]
    errors = [e for e in events if e.kind == "reply.error"]
    assert [(e.round, e.node_id, e.data["code"]) for e in errors] == [
        (2, lost, int(ErrorCode.NODE_UNAVAILABLE))
    ]
    assert result.history is not None
    rounds = {r.round: r for r in result.history.rounds}
    assert (rounds[2].train_replies, rounds[2].train_failures) == (2, 1)
    assert (rounds[3].train_replies, rounds[3].train_failures) == (3, 0)
    assert result.arrays is not None
    np.testing.assert_array_equal(result.arrays["w"], np.full(3, 3.0, dtype=np.float32))
    # The node rejoined with its id and its context state (round 1 kept, round 3 added)
    assert after == before
    joins = [e for e in _link_events(tmp_path / "link") if e.kind == "node.join"]
    assert any(e.node_id == lost and e.data["rejoin"] for e in joins)
    state = NodeStore(tmp_path / "node2").load_state(run.run_id)
    assert int(state["counter"]["count"]) == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the pid was reused by another user's process
        return False
    # A zombie (exited, not reaped by the dead link) is not alive either.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split(") ")[-1].startswith("Z"))


def _link_events(state_dir: Path) -> list[Event]:
    state = SqliteLinkState(state_dir / "state.db")
    try:
        return [entry.event for entry in state.read_events(0)]
    finally:
        state.close()


def test_a_reply_acknowledged_by_the_link_survives_a_sigkill(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: a link process, a run whose ServerApp sends one message, and a node (this
    # test) that receives it over the Fleet API
    fleet, control = _free_port(), _free_port()
    _start_link(processes, tmp_path / "link", fleet, control)
    app = _app(tmp_path / "app", "one_message_app", ONE_MESSAGE_APP)
    with grpc.insecure_channel(f"127.0.0.1:{fleet}", options=channel_options()) as channel:
        stub = fleet_pb2_grpc.FleetStub(channel)
        registered = stub.RegisterNode(fleet_pb2.RegisterNodeRequest(), wait_for_ready=True)
        metadata = bearer_metadata(registered.token)
        with ControlClient(f"127.0.0.1:{control}") as client:
            run = client.submit(app)
        # Open until the link dies: a node whose stream ends goes offline.
        call = stub.Receive(fleet_pb2.ReceiveRequest(), metadata=metadata, timeout=WAIT_S)
        request = message_from_proto(next(call).message, {})
        reply = Message(RecordDict({"metrics": MetricRecord({"acked": 1})}), reply_to=request)
        reply_proto, _ = message_to_proto(reply.with_metadata(src_node_id=registered.node_id))

        # Act: the link acknowledges the reply, then dies at once
        acked = stub.SendReply(fleet_pb2.SendReplyRequest(message=reply_proto), metadata=metadata)
        link = processes.children[0]
        link.send_signal(signal.SIGKILL)
        link.wait(10)

    # Assert: the reply is in the state the link left
    state = SqliteLinkState(tmp_path / "link" / "state.db")
    try:
        (stored,) = state.get_replies(run.run_id, [request.metadata.message_id])
        starts = [e.event for e in state.read_events(run.run_id) if e.event.kind == "run.start"]
    finally:
        state.close()
    # The ServerApp the dead link left behind ends once its calls fail.
    orphan = int(starts[0].data["pid"])
    try:
        _until("the orphaned ServerApp to exit", lambda: not _alive(orphan))
    finally:
        if _alive(orphan):
            os.kill(orphan, signal.SIGKILL)
    assert stored.metadata.message_id == acked.message_id
    assert stored.metadata.src_node_id == registered.node_id
    assert stored.content_hash is not None

    # Assert: restarted on that state, the link still knows it: the same reply again is
    # acknowledged with the same id
    _start_link(processes, tmp_path / "link", fleet, control)
    with grpc.insecure_channel(f"127.0.0.1:{fleet}", options=channel_options()) as channel:
        stub = fleet_pb2_grpc.FleetStub(channel)
        again = stub.SendReply(
            fleet_pb2.SendReplyRequest(message=reply_proto),
            metadata=metadata,
            wait_for_ready=True,
            timeout=WAIT_S,
        )
    assert again.message_id == acked.message_id


STOPPABLE_SERVER_APP = """
from corolla.core import ConfigRecord, Message, RecordDict
from corolla.server import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    (node_id,) = grid.wait_for_nodes(1, 60)
    content = RecordDict({"config": ConfigRecord({"hang": bool(context.run_config["hang"])})})
    ids = grid.send([Message(content, dst_node_id=node_id, message_type="train")])
    (reply,) = list(grid.receive(ids, timeout=3600))
    if reply.has_error():
        raise SystemExit(reply.error.reason)
"""

STOPPABLE_CLIENT_APP = """
import os
import time

from corolla.client import ClientApp
from corolla.core import Message, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(message, context):
    if message.content["config"]["hang"]:
        with open(context.node_config["hang-file"], "w") as marker:
            marker.write(str(os.getpid()))
        time.sleep(3600)
    return Message(RecordDict({"metrics": MetricRecord({"trained": 1})}), reply_to=message)
"""


def test_a_run_stopped_while_its_client_app_hangs_frees_the_node_for_the_next_run(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: one node, whose ClientApp calls may take an hour (the default), and a run
    # whose ClientApp hangs
    fleet, control = _free_port(), _free_port()
    _start_link(processes, tmp_path / "link", fleet, control)
    hang = tmp_path / "hang.pid"
    processes.start(
        "node", "node", "--link", f"127.0.0.1:{fleet}", "--state", str(tmp_path / "node"),
        "--node-config", f"hang-file={hang}",
    )  # fmt: skip
    app = _app(
        tmp_path / "app",
        "stoppable_app",
        STOPPABLE_SERVER_APP,
        STOPPABLE_CLIENT_APP,
        config="hang = false\n",
    )
    with ControlClient(f"127.0.0.1:{control}") as client:
        _until("the node online", lambda: len(_online(client)) == 1)
        hung = client.submit(app, {"hang": True})
        _until("the ClientApp to hang", lambda: hang.is_file() and hang.read_text() != "")
        client_app = int(hang.read_text())

        # Act
        client.stop_run(hung.run_id)
        _until("the node to kill the stopped run's ClientApp", lambda: not _alive(client_app))
        after = client.submit(app, {"hang": False})
        events = [event for _, event in client.events(after.run_id, timeout=WAIT_S)]
        stopped, finished = client.get_run(hung.run_id), client.get_run(after.run_id)
        online = _online(client)

    # Assert
    assert stopped.status == run_pb2.RUN_STATUS_STOPPED
    assert finished.status == run_pb2.RUN_STATUS_FINISHED, finished.status_reason
    assert [e.data["status"] for e in events if e.kind == "run.end"] == ["finished"]
    assert len(online) == 1
    # The node said what it did (``corolla node`` logs at INFO).
    log = (tmp_path / "node.log").read_text()
    assert f"run {hung.run_id} ended (stopped by a user)" in log
    assert f"serving run {after.run_id} (app stoppable_app)" in log
    assert f"run {after.run_id}: train message" in log and "answered in" in log
