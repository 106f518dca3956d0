"""The link killed with SIGKILL mid-run and restarted on its state resumes the run from its
last checkpoint, and ends with the arrays of an uninterrupted run (real processes)."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from corolla.core import ArrayRecord, ConfigRecord, Event, MetricRecord, RecordDict
from corolla.project import AppConfig, merge_run_config
from corolla.runtime import ControlClient, GrpcGrid, Link, make_bundle
from corolla.simulation import run_simulation
from corolla.state import DirectoryBlobStore, RunStatus, SqliteLinkState
from corolla.transport import run_pb2

from .test_e2e import APP, Processes, _free_port, _start_nodes, _wait_for_nodes

NUM_ROUNDS = 4
KILL_AFTER_CHECKPOINT = 2
OVERRIDES = {
    "num-server-rounds": NUM_ROUNDS,
    "seed": 0,
    "fraction-train": 1.0,
    "fraction-evaluate": 1.0,
}
RUN_S = 180.0


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def _start_link(processes: Processes, state: Path, fleet: int, control: int) -> None:
    processes.start(
        "link" if not processes.children else "link-again",
        "link",
        "--state",
        str(state),
        "--fleet-address",
        f"127.0.0.1:{fleet}",
        "--control-address",
        f"127.0.0.1:{control}",
        "--heartbeat-interval",
        "1",
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split(") ")[-1].startswith("Z"))


def _kill_if_alive(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_the_link_killed_mid_run_resumes_from_its_checkpoint(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: a link with 3 nodes, running quickstart-numpy for 4 rounds
    fleet, control = _free_port(), _free_port()
    state = tmp_path / "link"
    _start_link(processes, state, fleet, control)
    _start_nodes(processes, fleet, tmp_path, 3)
    app = AppConfig.load(APP)
    server_apps: list[int] = []
    try:
        with ControlClient(f"127.0.0.1:{control}") as client:
            _wait_for_nodes(client, 3, processes)
            run = client.submit(APP, OVERRIDES)
            before: list[Event] = []
            for _, event in client.events(run.run_id, timeout=RUN_S):
                before.append(event)
                if event.kind == "run.start":
                    server_apps.append(int(event.data["pid"]))
                if event.kind == "checkpoint" and event.round == KILL_AFTER_CHECKPOINT:
                    break

        # Act: SIGKILL the link in round 3, then restart it on the same state and ports
        link = processes.children[0]
        link.send_signal(signal.SIGKILL)
        link.wait(10)
        killed_at = time.monotonic()
        _start_link(processes, state, fleet, control)
        with ControlClient(f"127.0.0.1:{control}") as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get_run(run.run_id)
                    break
                except ConnectionError:
                    assert time.monotonic() < deadline, "the link did not come back"
                    time.sleep(0.1)
            events = [event for _, event in client.events(run.run_id, timeout=RUN_S)]
            server_apps += [int(e.data["pid"]) for e in events if e.kind == "run.start"]
            final = client.get_run(run.run_id)
            result = client.result(run.run_id)
        resumed_s = time.monotonic() - killed_at
    finally:
        _kill_if_alive(server_apps)

    simulated = run_simulation(
        app.server_ref,
        app.client_ref,
        3,
        backend="inline",
        run_config=merge_run_config(app.config, OVERRIDES),
    )

    # Assert: the run finished, resumed once after round 2, and ran rounds 3 and 4 again
    assert final.status == run_pb2.RUN_STATUS_FINISHED, final.status_reason
    assert resumed_s < RUN_S
    (resume,) = [e for e in events if e.kind == "run.resume"]
    # (Round 3 takes ~1 s, so the kill lands in it; a very slow event stream could let
    # it end first, and the run then resumes after round 3.)
    assert resume.round is not None and KILL_AFTER_CHECKPOINT <= resume.round < NUM_ROUNDS
    rerun = list(range(resume.round + 1, NUM_ROUNDS + 1))
    after_resume = events[events.index(resume) :]
    assert [e.round for e in after_resume if e.kind == "round.start"] == rerun
    assert [e.round for e in after_resume if e.kind == "checkpoint"] == rerun
    assert sum(1 for e in events if e.kind == "run.start" and e.data.get("resumed")) == 1
    # ... and ended with the arrays and history of the uninterrupted (simulated) run
    assert result.arrays is not None and simulated.arrays is not None
    assert list(result.arrays) == list(simulated.arrays)
    for name in simulated.arrays:
        np.testing.assert_allclose(result.arrays[name], simulated.arrays[name], rtol=1e-6, atol=0)
    assert result.history is not None
    assert [s.round for s in result.history.rounds] == list(range(NUM_ROUNDS + 1))
    assert simulated.history is not None
    for got, want in zip(result.history.rounds, simulated.history.rounds, strict=True):
        assert got.train_replies == want.train_replies == (3 if got.round else 0)
        np.testing.assert_allclose(
            got.server["accuracy"], want.server["accuracy"], rtol=1e-6, atol=0
        )


def test_a_grpc_grid_keeps_a_record_dict_checkpoint_on_the_link(
    link: Link, appio_channel: grpc.Channel
) -> None:
    # Arrange: a run's grid, and a second one as a restarted ServerApp gets it
    run = link.state.create_run("ab" * 32, {})
    grid = GrpcGrid(appio_channel, run.run_id, link.issue_run_secret(run.run_id))
    again = GrpcGrid(appio_channel, run.run_id, link.issue_run_secret(run.run_id))
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}),
            "loop": ConfigRecord({"history": "{}", "rng": "[1, 2]"}),
            "strategy/m": ArrayRecord({"w": np.full((3, 4), 0.5)}),
            "metrics": MetricRecord({"x": 1.5}),
        }
    )
    assert grid.checkpoints.load() is None

    # Act
    grid.checkpoints.save(1, RecordDict({"arrays": ArrayRecord({"w": np.zeros(2)})}))
    grid.checkpoints.save(2, content)
    restored = again.checkpoints.load()

    # Assert
    assert restored is not None and restored[0] == 2
    assert restored[1] == content


EMITTING_SERVER_APP = """
from corolla.core import Event
from corolla.server import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    grid.emit(Event("relaunched", grid.run_id))
"""


def test_a_restarted_link_relaunches_the_runs_its_predecessor_left_running(
    tmp_path: Path,
) -> None:
    # Arrange: the state a killed link left: a run running (its app not unpacked), one
    # starting, one pending
    app = tmp_path / "app"
    (app / "emitting").mkdir(parents=True)
    (app / "emitting" / "__init__.py").write_text("")
    (app / "emitting" / "server_app.py").write_text(textwrap.dedent(EMITTING_SERVER_APP))
    (app / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "emitting"
            [tool.corolla.app]
            serverapp = "emitting.server_app:app"
            clientapp = "emitting.server_app:app"
            """
        )
    )
    state_dir = tmp_path / "link"
    digest = DirectoryBlobStore(state_dir / "blobs").put(make_bundle(app))
    state = SqliteLinkState(state_dir / "state.db")
    try:
        running, starting, pending = (state.create_run(digest, {}) for _ in range(3))
        for run in (running, starting):
            state.update_run_status(run.run_id, RunStatus.STARTING)
        state.update_run_status(running.run_id, RunStatus.RUNNING)
    finally:
        state.close()

    # Act
    with Link(state_dir, fleet_address="127.0.0.1:0", control_address="127.0.0.1:0") as link:
        deadline = time.monotonic() + 60
        ids = (running.run_id, starting.run_id)
        while not all(link.state.get_run(i).status.ended for i in ids):
            assert time.monotonic() < deadline, "the relaunched runs did not end"
            time.sleep(0.05)
        runs = {i: link.state.get_run(i) for i in (*ids, pending.run_id)}
        kinds = {i: [e.event.kind for e in link.state.read_events(i)] for i in ids}

    # Assert: both ran their ServerApp again to the end; the pending one failed
    for run_id in ids:
        assert runs[run_id].status is RunStatus.FINISHED, runs[run_id].error
        assert "relaunched" in kinds[run_id]
    assert runs[pending.run_id].status is RunStatus.FAILED
