"""A Flower project on a link with nodes, managed as a user does, with the ``corolla``
commands: ``run --link`` submits it, ``ls`` lists it, ``log`` shows its events and
Flower's log lines, ``pull`` fetches the outputs a simulation of it writes, ``stop``
ends a longer one and leaves the nodes serving the next. Flower's own gRPC clients,
pointed at the link, are told what to use instead.

One link and the four nodes the app waits for serve the whole module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from flwr.proto import control_pb2 as flwr_control
from flwr.proto import control_pb2_grpc as flwr_control_grpc
from flwr.proto import fleet_pb2 as flwr_fleet
from flwr.proto import fleet_pb2_grpc as flwr_fleet_grpc

from corolla.runtime import ControlClient
from corolla.transport import control_pb2

from ..runtime.test_e2e import Processes
from .corpus import start_deployment

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "flower-numpy"
#: The app's strategy waits for four nodes each round.
NODES = 4
ROUNDS = 3
#: Agreement with the simulation, in units of float64's machine epsilon: a round's sums
#: are added in the order the replies arrive.
ULPS = 64
COMMAND_S = 120

pytestmark = pytest.mark.e2e


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A link with four nodes, and where the commands run."""

    control: str
    fleet: str
    home: Path

    def corolla(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """``corolla ARGS`` as a user types it in ``cwd``."""
        return subprocess.run(
            [sys.executable, "-m", "corolla", *args],
            cwd=cwd,
            # Wide enough for a table's every column, unabridged.
            env=dict(os.environ, COROLLA_HOME=str(self.home), COLUMNS="200"),
            capture_output=True,
            text=True,
            timeout=COMMAND_S,
        )

    def on_link(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """``corolla ARGS --link CONTROL``, expected to succeed."""
        done = self.corolla(*args, "--link", self.control, cwd=cwd)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done

    def runs(self, cwd: Path) -> dict[int, dict[str, Any]]:
        """The link's runs by id, as ``corolla ls --format json`` lists them."""
        listed = json.loads(self.on_link("ls", "--format", "json", cwd=cwd).stdout)
        return {run["run_id"]: run for run in listed["runs"]}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    logs = tmp_path_factory.mktemp("deployment")
    processes = Processes(logs)
    try:
        fleet, control = start_deployment(processes, logs, NODES)
        yield Deployment(f"127.0.0.1:{control}", f"127.0.0.1:{fleet}", logs / "home")
    finally:
        processes.stop_all()


def _first_round_of_a_new_run(client: ControlClient, before: set[int]) -> int:
    """The id of the run submitted after ``before`` was listed, once its nodes have
    answered a round's messages."""
    deadline = time.monotonic() + COMMAND_S
    for _ in range(int(COMMAND_S / 0.1)):
        if time.monotonic() > deadline:
            break
        for run in client.list_runs():
            if run.run_id not in before and any(
                event.kind == "progress" for _, event in client.events(run.run_id, follow=False)
            ):
                return run.run_id
        time.sleep(0.1)
    pytest.fail(f"no new run answered a round within {COMMAND_S} s")


@dataclasses.dataclass(frozen=True)
class StoppedRun:
    run_id: int
    #: What ``corolla stop`` printed.
    stop_stdout: str
    #: How ``corolla run --link``, following the run, ended.
    follower_code: int
    follower_stderr: str
    #: The nodes' statuses after the stop.
    nodes: list[int]


@pytest.fixture(scope="module")
def stopped(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> StoppedRun:
    """A run of far more rounds than the test waits for, followed as a user does, and
    stopped with ``corolla stop`` once its nodes answered a round."""
    cwd = tmp_path_factory.mktemp("stopped")
    with ControlClient(deployment.control) as client:
        before = {run.run_id for run in client.list_runs()}
        with open(cwd / "follower.log", "wb") as output:
            follower = subprocess.Popen(
                [
                    *(sys.executable, "-m", "corolla", "run", str(APP)),
                    *("--link", deployment.control, "--output", str(cwd / "long")),
                    *("--run-config", "num-server-rounds=100000"),
                ],
                cwd=cwd,
                env=dict(os.environ, COROLLA_HOME=str(deployment.home)),
                stdout=output,
                stderr=subprocess.PIPE,
                text=True,
            )
        try:
            run_id = _first_round_of_a_new_run(client, before)
            stop = deployment.on_link("stop", str(run_id), cwd=cwd)
            _, errors = follower.communicate(timeout=COMMAND_S)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.communicate()
        nodes = [node.status for node in client.list_nodes()]
    return StoppedRun(run_id, stop.stdout, follower.returncode, errors, nodes)


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    run_id: int
    #: What ``corolla run --link`` printed and wrote.
    stdout: str
    output: Path
    #: What ``corolla run`` wrote simulating the same project.
    simulated: Path


@pytest.fixture(scope="module")
def finished(
    deployment: Deployment, stopped: StoppedRun, tmp_path_factory: pytest.TempPathFactory
) -> FinishedRun:
    """The project run to its end on the nodes that served the stopped run, and
    simulated."""
    cwd = tmp_path_factory.mktemp("finished")
    deployed = deployment.on_link("run", str(APP), "--output", "deployed", cwd=cwd)
    submitted = re.search(r"run (\d+) submitted to the link", deployed.stdout)
    assert submitted is not None, deployed.stdout[-2000:]
    simulated = deployment.corolla(
        "run", str(APP), "--backend", "inline", "--quiet", "--output", "simulated", cwd=cwd
    )
    assert simulated.returncode == 0, simulated.stdout[-2000:] + simulated.stderr[-2000:]
    return FinishedRun(int(submitted[1]), deployed.stdout, cwd / "deployed", cwd / "simulated")


def _model(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def test_ls_lists_the_flower_run_with_its_status_and_app(
    deployment: Deployment, finished: FinishedRun, tmp_path: Path
) -> None:
    # Act
    table = deployment.on_link("ls", cwd=tmp_path).stdout

    # Assert: the run's row names it, its app and its status
    [row] = [line for line in table.splitlines() if str(finished.run_id) in line]
    assert [cell.strip() for cell in row.strip("│ ").split("│")][:3] == [
        str(finished.run_id),
        "flower-numpy",
        "finished",
    ]


def test_log_shows_the_run_s_events_and_flower_s_own_log_lines(
    deployment: Deployment, finished: FinishedRun, tmp_path: Path
) -> None:
    # Act
    text = deployment.on_link("log", str(finished.run_id), cwd=tmp_path).stdout

    # Assert: Corolla's events, each as a sentence after its time
    lines = [line.split(" ", 1)[1] for line in text.splitlines()]
    for sentence in (
        "run submitted: app flower-numpy",
        "ServerApp started",
        "app flower-numpy loaded",
        f"train: {NODES} of {NODES} replies",
        f"evaluate: {NODES} of {NODES} replies",
        "final arrays stored (2 arrays)",
        "run finished",
    ):
        assert sentence in lines, sentence
    # Flower's own lines, as its strategy logged each round, in plain text
    flower = [line.removeprefix("| ") for line in lines if line.startswith("| ")]
    assert [line for line in flower if "[ROUND" in line] == [
        f"INFO :      [ROUND {r}/{ROUNDS}]" for r in range(1, ROUNDS + 1)
    ]
    assert "\x1b" not in text
    # What `corolla run --link` showed as the run went
    assert f"INFO :      [ROUND {ROUNDS}/{ROUNDS}]" in finished.stdout


def test_pull_fetches_the_outputs_a_simulation_of_the_project_writes(
    deployment: Deployment, finished: FinishedRun, tmp_path: Path
) -> None:
    # Act
    pulled = deployment.on_link(
        "pull", str(finished.run_id), "--output", str(tmp_path / "pulled"), cwd=tmp_path
    )

    # Assert: what `corolla run --link` wrote, and the simulation's rounds and model
    assert "history.json" in pulled.stdout
    history = json.loads((tmp_path / "pulled" / "history.json").read_text())
    assert history == json.loads((finished.output / "history.json").read_text())
    simulated = json.loads((finished.simulated / "history.json").read_text())
    assert [r["round"] for r in history["rounds"]] == list(range(1, ROUNDS + 1))
    for ours, flower in zip(history["rounds"], simulated["rounds"], strict=True):
        for count in ("train_replies", "evaluate_replies"):
            assert ours[count] == flower[count] == NODES
        assert ours["train_failures"] == ours["evaluate_failures"] == 0
        for phase in ("train", "evaluate"):
            assert ours[phase] == pytest.approx(flower[phase], rel=ULPS * np.finfo(float).eps)
    final = _model(tmp_path / "pulled" / "final.npz")
    expected = _model(finished.simulated / "final.npz")
    assert sorted(final) == sorted(expected)
    for name, array in expected.items():
        assert final[name].dtype == array.dtype
        eps = float(np.finfo(array.dtype).eps)
        np.testing.assert_allclose(final[name], array, rtol=ULPS * eps, atol=ULPS * eps)
    assert (tmp_path / "pulled" / "metrics.png").stat().st_size > 0
    info = json.loads((tmp_path / "pulled" / "run.json").read_text())
    assert (info["run_id"], info["status"]) == (finished.run_id, "finished")


def test_stop_ends_a_longer_flower_run_and_the_nodes_serve_the_next(
    deployment: Deployment, stopped: StoppedRun, finished: FinishedRun, tmp_path: Path
) -> None:
    # Act: the stopped run, and the next, as `corolla ls` lists them
    runs = deployment.runs(tmp_path)
    run = runs[stopped.run_id]

    # Assert: the run stopped, and says why where a user looks
    assert stopped.stop_stdout.strip() == f"run {stopped.run_id}: stopped"
    assert (run["status"], run["reason"]) == ("stopped", "stopped with corolla stop")
    assert run["run_config"]["num-server-rounds"] == 100000
    assert stopped.follower_code == 1
    reason = f"run {stopped.run_id} did not finish (stopped): stopped with corolla stop"
    assert reason in stopped.follower_stderr
    # The nodes stayed up, and served the next run (the finished one) to its end
    assert stopped.nodes == [control_pb2.NODE_STATUS_ONLINE] * NODES
    assert finished.run_id != stopped.run_id
    assert runs[finished.run_id]["status"] == "finished"


def test_flower_s_own_grpc_clients_are_told_to_use_corolla_s_commands(
    deployment: Deployment,
) -> None:
    # Act: Flower's generated clients, as its CLI and SuperNode call a SuperLink over gRPC
    control = grpc.insecure_channel(deployment.control)
    with control, pytest.raises(grpc.RpcError) as cli:
        flwr_control_grpc.ControlStub(control).ListRuns(flwr_control.ListRunsRequest(), timeout=10)
    fleet = grpc.insecure_channel(deployment.fleet)
    with fleet, pytest.raises(grpc.RpcError) as supernode:
        flwr_fleet_grpc.FleetStub(fleet).RegisterNode(
            flwr_fleet.RegisterNodeFleetRequest(), timeout=10
        )

    # Assert
    assert cli.value.code() is supernode.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "this is a Corolla link, not a Flower SuperLink" in (cli.value.details() or "")
    assert f"corolla run DIR --link {deployment.control}" in (cli.value.details() or "")
    assert f"corolla node --link {deployment.fleet}" in (supernode.value.details() or "")
