"""End to end: a link and 3 nodes as real processes on 127.0.0.1 give the simulation's result."""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from corolla.cli._remote import submit_and_follow
from corolla.project import AppConfig, merge_run_config
from corolla.runtime import ControlClient
from corolla.server import RunResult
from corolla.simulation import SimulationResult, run_simulation
from corolla.transport import array_entries, records_pb2, user_config_from_proto

from ..telemetry.collector import OtlpCollector, Span

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "quickstart-numpy"

#: Every node trains and evaluates each round: node ids are random in deployment, so a
#: sampled subset could not be matched with the simulation's nodes.
OVERRIDES = {"num-server-rounds": 3, "seed": 0, "fraction-train": 1.0, "fraction-evaluate": 1.0}
#: The app's own sampling (half the nodes train, a fifth evaluate, each round).
SAMPLED = {"num-server-rounds": 3, "seed": 0}
STARTUP_S = 60.0
RUN_S = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Child processes that are always stopped, then killed if they linger."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self._logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = dict(os.environ, COROLLA_HOME=str(self._logs / "home"))
        child = subprocess.Popen(
            [sys.executable, "-m", "corolla", *args], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def _wait_for_nodes(client: ControlClient, count: int, procs: Processes) -> None:
    deadline = time.monotonic() + STARTUP_S
    for _ in range(int(STARTUP_S / 0.1)):
        try:
            online = [n for n in client.list_nodes() if n.status == 1]
            if len(online) >= count:
                return
        except ConnectionError:
            pass  # the link is still starting
        dead = [c.args for c in procs.children if c.poll() is not None]
        assert not dead, f"processes exited early: {dead}"
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    pytest.fail(f"{count} nodes did not come online within {STARTUP_S} s")


def _start_nodes(
    processes: Processes, fleet: int, directory: Path, count: int, metrics: Sequence[int] = ()
) -> None:
    """Start ``count`` ``corolla node`` processes on the Fleet port ``fleet``, with the node
    configs of a simulation's ``count`` nodes (``partition-id``, ``num-partitions``) and
    each its state directory ``directory/node<i>``; node ``i`` serves Prometheus metrics
    on port ``metrics[i]``, if given."""
    for i in range(count):
        served = ("--metrics-address", f"127.0.0.1:{metrics[i]}") if i < len(metrics) else ()
        processes.start(
            f"node{i}",
            "node",
            "--link",
            f"127.0.0.1:{fleet}",
            "--node-config",
            f"partition-id={i}",
            f"num-partitions={count}",
            "--state",
            str(directory / f"node{i}"),
            *served,
        )


def _start_link(
    processes: Processes, tmp_path: Path, *extra: str, metrics: int = 0
) -> tuple[int, int]:
    """Start ``corolla link`` on free loopback ports with the options ``extra`` (serving
    Prometheus metrics on port ``metrics`` if not 0); its Fleet and Control ports."""
    fleet, control = _free_port(), _free_port()
    processes.start(
        "link",
        "link",
        "--state",
        str(tmp_path / "link"),
        "--fleet-address",
        f"127.0.0.1:{fleet}",
        "--control-address",
        f"127.0.0.1:{control}",
        *(("--metrics-address", f"127.0.0.1:{metrics}") if metrics else ()),
        *extra,
    )
    return fleet, control


def _deploy_and_simulate(
    app: AppConfig, control: int, overrides: dict[str, Any], output: Path
) -> tuple[RunResult, SimulationResult]:
    """Run ``app`` through the link at ``control``, then as a 3-node simulation."""
    deployed = submit_and_follow(
        app,
        f"127.0.0.1:{control}",
        overrides,
        output,
        Console(file=io.StringIO()),
        quiet=True,
        timeout=RUN_S,
    )
    simulated = run_simulation(
        app.server_ref,
        app.client_ref,
        3,
        backend="inline",
        run_config=merge_run_config(app.config, overrides),
    )
    return deployed, simulated


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpCollector]:
    """An OTLP collector that the processes started after it (and simulations) trace to."""
    with OtlpCollector() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
        yield running


def test_link_and_three_nodes_match_the_simulation(
    processes: Processes, collector: OtlpCollector, tmp_path: Path
) -> None:
    # Arrange: with tracing on, exported to a collector
    metrics, node_metrics = _free_port(), _free_port()
    fleet, control = _start_link(processes, tmp_path, metrics=metrics)
    _start_nodes(processes, fleet, tmp_path, 3, metrics=[node_metrics])
    app = AppConfig.load(APP)
    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, 3, processes)

    # Act
    deployed, simulated = _deploy_and_simulate(app, control, OVERRIDES, tmp_path / "out")

    # Assert
    assert deployed.arrays is not None and simulated.arrays is not None
    assert list(deployed.arrays) == list(simulated.arrays)
    for name in simulated.arrays:
        np.testing.assert_allclose(deployed.arrays[name], simulated.arrays[name], rtol=1e-6, atol=0)
    assert deployed.history is not None and len(deployed.history.rounds) == 4  # rounds 0..3
    assert (tmp_path / "out" / "final.npz").is_file()

    # The same run through the command line gives the same arrays.
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "corolla",
            "run",
            str(APP),
            "--link",
            f"127.0.0.1:{control}",
            "--run-config",
            *(f"{k}={v}" for k, v in OVERRIDES.items() if k != "seed"),
            "--seed",
            "0",
            "--quiet",
            "--output",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_S,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    with np.load(tmp_path / "cli" / "final.npz") as final:
        for name in simulated.arrays:
            np.testing.assert_allclose(final[name], simulated.arrays[name], rtol=1e-6, atol=0)

    # Once both runs have ended, the link keeps of them only the bundle, and per run the
    # checkpoint's record and the arrays it names, and the final arrays.
    with ControlClient(f"127.0.0.1:{control}") as client:
        run_ids = [run.run_id for run in client.list_runs()]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            any(e.kind == "run.collected" for _, e in client.events(r, follow=False))
            for r in run_ids
        ):
            time.sleep(0.1)
        results = [
            ref["sha256"]
            for r in run_ids
            for _, e in client.events(r, follow=False)
            if e.kind == "run.result"
            for ref in e.data["arrays"]
        ]
    blobs = tmp_path / "link" / "blobs"
    with sqlite3.connect(tmp_path / "link" / "state.db") as db:
        bundles = {row[0] for row in db.execute("SELECT bundle_hash FROM runs")}
        checkpoints = {row[0] for row in db.execute("SELECT blob_hash FROM checkpoints")}
    checkpoint_arrays = set()
    for checkpoint in checkpoints:
        record = records_pb2.RecordDict()
        record.ParseFromString((blobs / checkpoint[:2] / checkpoint).read_bytes())
        checkpoint_arrays |= set(array_entries(record))
    kept = bundles | checkpoints | checkpoint_arrays | set(results)
    assert len(run_ids) == 2
    assert {p.name for p in blobs.glob("??/*") if p.is_file()} == kept

    # The link's Prometheus endpoint counts the two finished runs and the three nodes.
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as page:
        exposition = page.read().decode()
    assert 'corolla_link_runs{status="finished"} 2.0' in exposition
    assert 'corolla_link_nodes{status="online"} 3.0' in exposition
    # ... and each run's training: its rounds, the last value of its metrics, its replies.
    first = _samples(exposition, run_id=str(run_ids[0]))
    assert first[("corolla_run_rounds", ())] == 3
    for phase in ("train", "evaluate"):
        last = getattr(deployed.history.rounds[-1], phase)
        for name, value in last.items():
            sample = first[("corolla_run_metric", (("name", name), ("phase", phase)))]
            assert sample == pytest.approx(value)
        replies = sum(getattr(r, f"{phase}_replies") for r in deployed.history.rounds)
        assert first[("corolla_run_replies_total", (("phase", phase),))] == replies == 9
        assert first[("corolla_run_failures_total", (("phase", phase),))] == 0
    assert f'corolla_run_rounds{{app="quickstart-numpy",run_id="{run_ids[0]}"}} 3.0' in exposition

    # The node that serves metrics counts the messages it answered (a train and an
    # evaluate message a round, two runs) and the bytes each way.
    with urllib.request.urlopen(f"http://127.0.0.1:{node_metrics}/metrics", timeout=10) as page:
        node = _samples(page.read().decode())
    served = (("outcome", "ok"), ("type", "train"))
    assert node[("corolla_node_messages_total", served)] == 6
    assert node[("corolla_node_messages_total", (("outcome", "ok"), ("type", "evaluate")))] == 6
    assert node[("corolla_node_clientapp_seconds_count", (("type", "train"),))] == 6
    assert node[("corolla_node_clientapp_seconds_sum", (("type", "train"),))] > 0
    assert node[("corolla_node_received_bytes_total", ())] > 0
    assert node[("corolla_node_sent_bytes_total", ())] > 0
    assert not any(name == "corolla_node_errors_total" for name, _ in node)

    # Each round of each run is a trace from the ServerApp through the link to every node's
    # ClientApp, and back; each process exports its spans, the link and the nodes as they
    # stop.
    processes.stop_all()
    spans = collector.spans
    by_id = {span.span_id: span for span in spans}

    def path(span: Span) -> list[str]:
        names = [f"{span.service}: {span.name}"]
        while span.parent_id:
            span = by_id[span.parent_id]
            names.insert(0, f"{span.service}: {span.name}")
        return names

    calls = [s for s in spans if s.service == "corolla-node" and s.name == "clientapp train"]
    assert len(calls) == 3 * 3 * 2  # nodes, rounds, runs
    assert len({call.trace_id for call in calls}) == 3 * 2
    assert {tuple(path(call)[1:]) for call in calls} == {
        (
            "corolla-serverapp: send train",
            "corolla-link: link store train",
            "corolla-link: link forward train",
            "corolla-node: node train",
            "corolla-node: clientapp train",
        )
    }
    assert {path(call)[0] for call in calls} == {f"corolla-serverapp: round {r}" for r in (1, 2, 3)}
    replies = [s for s in spans if s.name == "reply train"]
    assert len(replies) == 3 * 3 * 2
    assert all(
        path(reply)[-4:-1]
        == [
            "corolla-node: node train",
            "corolla-link: link store train",
            "corolla-link: link forward train",
        ]
        for reply in replies
    )
    assert any(s.service == "corolla-simulation" and s.name == "clientapp train" for s in spans)


def _samples(exposition: str, **only: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, its labels but run_id and app, sorted): value}`` of a Prometheus
    exposition, of the samples whose labels include ``only``."""
    return {
        (
            sample.name,
            tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("run_id", "app"))),
        ): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if all(sample.labels.get(k) == v for k, v in only.items())
    }


def test_sampled_rounds_match_the_simulation_whatever_ids_the_nodes_get(
    processes: Processes, tmp_path: Path
) -> None:
    # Arrange: a link, and 3 nodes with the node configs of the simulation's 3 nodes
    # (partition-id 0, 1, 2); the link gives them random ids, in no particular order. The
    # grids list nodes by node config, so a seeded sample picks the same partitions.
    fleet, control = _start_link(processes, tmp_path)
    _start_nodes(processes, fleet, tmp_path, 3)
    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, 3, processes)
        partitions = {
            n.node_id: user_config_from_proto(n.node_config)["partition-id"]
            for n in client.list_nodes()
        }
    app = AppConfig.load(APP)
    assert float(app.config["fraction-train"]) < 1.0  # the app samples

    # Act
    deployed, simulated = _deploy_and_simulate(app, control, SAMPLED, tmp_path / "out")

    # Assert: the same partitions trained, so the same arrays came out
    assert sorted(partitions.values()) == [0, 1, 2]
    assert deployed.arrays is not None and simulated.arrays is not None
    for name in simulated.arrays:
        np.testing.assert_allclose(deployed.arrays[name], simulated.arrays[name], rtol=1e-6, atol=0)
