"""Corolla in deployment: a link and its nodes as real processes on 127.0.0.1.

Starts ``corolla link`` and nodes as child processes, submits the app in ``_deploy_app/``
(FedAvg over a constant-step "training", every node in every round) through the Control
API, follows the run's events, and prints one JSON object::

    python benchmarks/deploy.py --workload a
    python benchmarks/deploy.py --workload b --nodes 1000 --processes 2
    python benchmarks/deploy.py --workload c

Workloads:

- ``a``: a 100 MB model (25M float32), 4 ``corolla node`` processes, 3 rounds.
- ``b``: 1,000 light asynchronous Fleet clients (``_deploy_nodes.py``, 500 per process by default,
  one gRPC connection each), 5 rounds of 10k parameters.
- ``c``: 10 light clients, 30 rounds of 10k parameters: the delivery delay of messages.

Figures:

- ``round_s_median``: median over rounds of the time between the run's ``round.start``
  and ``round.end`` events (stamped by the ServerApp process).
- ``to_nodes_mb_per_s`` / ``from_nodes_mb_per_s`` (workload a): the link's array
  throughput each way, from its Prometheus metrics (``--metrics-address``), read when the
  run starts and at each ``round.end``: per round, the bytes of array data served to
  (received from) nodes over the seconds during which at least one such transfer was in
  flight; the median over rounds, as for ``round_s_median`` (each round's figure in
  ``..._rounds``, the whole run's in ``..._whole_run``). ``payload_mb_per_s`` is the
  smaller of the two medians, the figure the target of 500 MB/s each way is checked
  against.
- ``round_mb_per_s`` (workload a): ``model bytes x nodes / round_s_median``, the array
  bytes each way per second of a whole round, training and aggregation included.
- ``link_peak_rss_mb``: the largest sum of resident set sizes of the link process and its
  descendants (the run's ServerApp process), sampled every 50 ms;
  ``link_process_peak_rss_mb`` and ``serverapp_peak_rss_mb``: the peak of each part. The
  target of a (3 x model + 200 MB whatever the number of nodes) applies to the link
  process: the ServerApp's memory is the app's (FedAvg alone keeps the global model and
  its float64 sums, 300 MB for a 100 MB model, before any reply arrives).
- ``link_blobs_peak_mb`` / ``link_blobs_end_mb``: the size of the link's blob directory:
  its peak, sampled with the memory, and once the run has ended (what the link keeps:
  the bundle, the last checkpoint and the final model).
- ``cpu_s``: CPU seconds (user + system) of the link process, of the run's ServerApp
  (once it has ended) and of the nodes together (with their ClientApp processes, whose
  part is also given as ``client_apps``), from start-up to the run's end;
  ``cpu_s_rounds``, each round's share (from the run's submission, or the round before,
  to the round's end: the first round's holds the start of the nodes' ClientApp processes).
- ``lost_replies``: ``rounds x nodes`` minus the train replies the rounds aggregated.
- ``latency_ms_median`` / ``latency_ms_p95``: from a message's ``created_at`` (stamped
  when the ServerApp builds it) to its arrival at the node: on the light clients' ``Receive``
  stream (b, c), or at the call of the ClientApp in ``corolla node``, after the array
  download (a, ``delivery-s``).
- ``result_exact`` (a): the final model is exactly ``initial + rounds x step``.
- ``dashboard`` (with ``--dashboard``): the link also serves its web dashboard, and a
  watcher asks for what an open run page asks (the run and the runs list every second, as
  the page's live updates do at most, and the participation map every 5 s, logged in on a
  link with ``--auth``): its requests, failures and the median and slowest answer.

The exit status is 1 if the run did not finish.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
APP = HERE / "_deploy_app"
sys.path.insert(0, str(APP))

from deploy_bench import ARRAY_NAME, initial_model  # noqa: E402

from corolla.core import Event  # noqa: E402
from corolla.runtime import ControlClient  # noqa: E402
from corolla.trust import NodeKey  # noqa: E402

MB = 1024 * 1024
STEP = 0.5
SEED = 7
STARTUP_S = 180.0
STOP_S = 15.0


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    nodes: int
    params: int
    rounds: int
    light: bool
    processes: int = 1
    max_round_s: float | None = None
    min_mb_per_s: float | None = None
    max_latency_ms: float | None = None


WORKLOADS = {
    "a": Workload("a", 4, 25_000_000, 3, light=False, min_mb_per_s=500.0),
    # One light-client process per core of this 2-core machine: the clients stand for
    # remote nodes, and more processes than cores only add context switches.
    "b": Workload("b", 1_000, 10_000, 5, light=True, processes=2, max_round_s=2.0),
    "c": Workload("c", 10, 10_000, 30, light=True, max_latency_ms=50.0),
}


class Processes:
    """Child processes that are always stopped, then killed if they linger."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self.children: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self._logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = dict(os.environ, COROLLA_HOME=str(self._logs / "home"))
        child = subprocess.Popen(
            [sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        self.children.append(child)
        self.names.append(name)
        return child

    def stop_all(self) -> None:
        # Clients first, the link last, so that the nodes do not spin reconnecting.
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
        for child in reversed(self.children):
            try:
                child.wait(STOP_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(STOP_S)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) so far of the link (its ended children, the run's
        ServerApp, apart) and of the other processes together, with their descendants
        (a node's ClientApp processes, also counted apart as ``client_apps``)."""
        out = {"link": 0.0, "serverapp": 0.0, "nodes": 0.0, "client_apps": 0.0}
        for name, child in zip(self.names, self.children, strict=True):
            try:
                process = psutil.Process(child.pid)
                times = process.cpu_times()
                descendants = process.children(recursive=True)
            except psutil.Error:
                continue
            if name == "link":
                out["link"] = times.user + times.system
                out["serverapp"] = times.children_user + times.children_system
                continue
            own = times.user + times.system + times.children_user + times.children_system
            below = 0.0
            for descendant in descendants:
                with contextlib.suppress(psutil.Error):
                    below += sum(descendant.cpu_times()[:2])
            out["nodes"] += own + below
            out["client_apps"] += below
        return out

    def dead(self) -> list[str]:
        return [n for n, c in zip(self.names, self.children, strict=True) if c.poll() is not None]


def directory_bytes(root: Path) -> int:
    """The bytes of the files in ``root`` and its subdirectories (0 if it is missing)."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                total += os.stat(os.path.join(directory, name)).st_size
    return total


class TreeMemory:
    """Samples the summed RSS of a process and its descendants in a thread; also the
    peaks of the process alone and of its descendants alone, and of the size of the
    files in ``disk`` (the link's blob directory)."""

    def __init__(self, pid: int, disk: Path, interval: float = 0.05) -> None:
        self.peak_rss = 0
        self.peak_root_rss = 0
        self.peak_children_rss = 0
        self.peak_disk = 0
        self.samples = 0
        self._disk = disk
        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="link-memory", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                processes = [self._root, *self._root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            sizes = []
            for process in processes:
                try:
                    sizes.append(process.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    sizes.append(0)
            self.peak_rss = max(self.peak_rss, sum(sizes))
            self.peak_root_rss = max(self.peak_root_rss, sizes[0])
            self.peak_children_rss = max(self.peak_children_rss, sum(sizes[1:]))
            self.peak_disk = max(self.peak_disk, directory_bytes(self._disk))
            self.samples += 1

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def array_traffic(metrics_url: str) -> dict[str, tuple[float, float]]:
    """``{direction: (bytes, busy seconds)}`` of the link's array traffic so far."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    moved: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "corolla_link_array_bytes_total":
                moved[sample.labels["direction"]][0] = sample.value
            elif sample.name == "corolla_link_array_transfer_seconds_total":
                moved[sample.labels["direction"]][1] = sample.value
    return {direction: (b, s) for direction, (b, s) in moved.items()}


def _round_rates(readings: list[dict[str, tuple[float, float]]], direction: str) -> list[float]:
    """MB/s ``direction`` in each interval between consecutive ``readings``."""
    rates = []
    for before, after in itertools.pairwise(readings):
        moved = after[direction][0] - before[direction][0]
        busy = after[direction][1] - before[direction][1]
        if busy > 0:
            rates.append(moved / busy / MB)
    return rates


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_nodes(client: ControlClient, count: int, procs: Processes) -> float:
    """Wait until ``count`` nodes are online; return the seconds it took."""
    started = time.monotonic()
    for _ in range(int(STARTUP_S / 0.2)):
        try:
            online = sum(1 for n in client.list_nodes() if n.status == 1)
            if online >= count:
                return time.monotonic() - started
        except ConnectionError:
            pass  # the link is still starting
        if procs.dead():
            raise RuntimeError(f"processes exited early: {procs.dead()}")
        if time.monotonic() - started > STARTUP_S:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{count} nodes did not come online within {STARTUP_S} s")


def _start_nodes(
    workload: Workload,
    procs: Processes,
    fleet: str,
    tmp: Path,
    processes: int,
    keys_file: Path | None = None,
) -> list[Path]:
    if not workload.light:
        for i in range(workload.nodes):
            procs.start(
                f"node{i}", "-m", "corolla", "node", "--link", fleet,
                "--node-config", f"partition-id={i}", "--state", str(tmp / f"node{i}"),
            )  # fmt: skip
        return []
    stats = []
    share, extra = divmod(workload.nodes, processes)
    first = 0
    for p in range(processes):
        count = share + (1 if p < extra else 0)
        path = tmp / f"clients{p}.json"
        keys = ["--keys", str(keys_file)] if keys_file is not None else []
        procs.start(
            f"clients{p}", str(HERE / "_deploy_nodes.py"), "--link", fleet,
            "--clients", str(count), "--first", str(first), "--stats", str(path), *keys,
        )  # fmt: skip
        stats.append(path)
        first += count
    return stats


#: The benchmark's admin account, on a link with --auth.
_ADMIN, _PASSWORD = "bench-admin", "bench-admin-password"


def _make_admin(state: Path) -> None:
    """The link's first admin, made as its operator does (`corolla accounts init`)."""
    subprocess.run(
        [sys.executable, "-m", "corolla", "accounts", "init", "--state", str(state), _ADMIN,
         "--password-stdin"],
        input=_PASSWORD + "\n", text=True, check=True, capture_output=True,
    )  # fmt: skip


def _login(control: str) -> str:
    """The admin's token, once the link answers."""
    started = time.monotonic()
    while True:
        try:
            with ControlClient(control) as anonymous:
                return anonymous.accounts.login(_ADMIN, _PASSWORD).token
        except ConnectionError:
            if time.monotonic() - started > STARTUP_S:
                raise
            time.sleep(0.2)


def _node_keys(workload: Workload, tmp: Path) -> tuple[list[str], Path | None]:
    """The public keys of the workload's nodes, to register, and for light clients the
    file of their private keys. ``corolla node`` makes its key in its state directory."""
    if not workload.light:
        keys = [NodeKey.load_or_create(tmp / f"node{i}")[0] for i in range(workload.nodes)]
        return [k.public_text for k in keys], None
    private = [Ed25519PrivateKey.generate() for _ in range(workload.nodes)]
    raw = serialization.Encoding.Raw
    seeds = [
        k.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()).hex()
        for k in private
    ]
    path = tmp / "keys.json"
    path.write_text(json.dumps(seeds))
    return [NodeKey(k).public_text for k in private], path


def _follow(
    client: ControlClient,
    run_id: int,
    timeout: float,
    events: list[Event],
    on_round_end: Callable[[], None] = lambda: None,
) -> tuple[Event | None, Event | None]:
    """Collect the run's events into ``events`` until it ends or ``timeout`` passes,
    calling ``on_round_end`` at each ``round.end``."""
    result = end = None
    try:
        for _, event in client.events(run_id, follow=True, timeout=timeout):
            events.append(event)
            if event.kind == "round.end":
                on_round_end()
            if event.kind == "run.result":
                result = event
            elif event.kind == "run.end":
                end = event
    except ConnectionError:  # the timeout: report what happened until then
        pass
    return result, end


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


class PageWatcher:
    """Asks the dashboard at ``url`` for what an open page of run ``run_id`` asks, on its
    own thread, until stopped; the answers' times."""

    def __init__(self, url: str, login: tuple[str, str] | None) -> None:
        self.url = url
        self.run_id: int | None = None
        self.seconds: list[float] = []
        self.failures: list[str] = []
        self._login = login
        self._stop = threading.Event()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        self._thread = threading.Thread(target=self._loop, name="page-watcher", daemon=True)

    def __enter__(self) -> PageWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _get(self, path: str) -> None:
        started = time.perf_counter()
        try:
            self._opener.open(f"{self.url}{path}", timeout=10).read()
        except OSError as exc:
            self.failures.append(f"{path}: {exc}")
            return
        self.seconds.append(time.perf_counter() - started)

    def _open(self) -> None:
        """Wait for the dashboard to answer (the link is starting), then log in."""
        started = time.monotonic()
        while not self._stop.is_set():
            try:
                self._opener.open(f"{self.url}/api/me", timeout=10).read()
                break
            except OSError:
                if time.monotonic() - started > STARTUP_S:
                    raise
                time.sleep(0.2)
        if self._login is not None:
            name, password = self._login
            body = json.dumps({"name": name, "password": password}).encode()
            headers = {"Content-Type": "application/json", "Origin": self.url}
            request = urllib.request.Request(f"{self.url}/api/login", body, headers)
            self._opener.open(request, timeout=10).read()

    def _loop(self) -> None:
        self._open()
        tick = 0
        while not self._stop.wait(1.0):
            self._get("/api/runs?limit=50")
            if self.run_id is not None:
                self._get(f"/api/runs/{self.run_id}")
                if tick % 5 == 0:
                    self._get(f"/api/runs/{self.run_id}/participation")
            tick += 1

    def report(self) -> dict[str, Any]:
        return {
            "requests": len(self.seconds) + len(self.failures),
            "failures": self.failures[:5],
            "answer_s_median": statistics.median(self.seconds) if self.seconds else None,
            "answer_s_max": max(self.seconds, default=None),
        }


def run_workload(
    workload: Workload,
    processes: int,
    timeout: float,
    check_result: bool,
    auth: bool = False,
    dashboard: bool = False,
) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    run_config = {
        "params": workload.params,
        "rounds": workload.rounds,
        "nodes": workload.nodes,
        "step": STEP,
        "seed": SEED,
    }
    with tempfile.TemporaryDirectory(prefix="corolla-deploy-") as tmp_name:
        tmp = Path(tmp_name)
        fleet, control = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
        metrics = f"127.0.0.1:{_free_port()}"
        metrics_url = f"http://{metrics}/metrics"
        page = f"127.0.0.1:{_free_port()}"
        procs = Processes(tmp)
        try:
            if auth:
                _make_admin(tmp / "link")
            link = procs.start(
                "link", "-m", "corolla", "link", "--state", str(tmp / "link"),
                "--fleet-address", fleet, "--control-address", control,
                "--metrics-address", metrics, *(["--auth"] if auth else []),
                *(["--dashboard-address", page] if dashboard else []),
            )  # fmt: skip
            blobs = tmp / "link" / "blobs"
            token = _login(control) if auth else None
            keys_file = None
            watcher: PageWatcher | contextlib.nullcontext[None] = contextlib.nullcontext()
            if dashboard:
                watcher = PageWatcher(f"http://{page}", (_ADMIN, _PASSWORD) if auth else None)
            with (
                TreeMemory(link.pid, blobs) as memory,
                ControlClient(control, token=token) as client,
                watcher,
            ):
                if auth:
                    public, keys_file = _node_keys(workload, tmp)
                    for i, key in enumerate(public):
                        client.accounts.add_node_key(key, f"node{i}")
                stats_files = _start_nodes(workload, procs, fleet, tmp, processes, keys_file)
                connect_s = _wait_for_nodes(client, workload.nodes, procs)
                traffic_before = array_traffic(metrics_url)
                # Read at each round's end: a round's uploads are over by then, and the
                # next round's downloads wait for the ServerApp to send the new model.
                at_round_ends: list[dict[str, tuple[float, float]]] = [traffic_before]
                cpu_at_round_ends = [procs.cpu_seconds()]

                def round_ended() -> None:
                    at_round_ends.append(array_traffic(metrics_url))
                    cpu_at_round_ends.append(procs.cpu_seconds())

                submitted = time.time()
                run = client.submit(APP, run_config)
                if isinstance(watcher, PageWatcher):
                    watcher.run_id = run.run_id
                events: list[Event] = []
                result_event, end = _follow(client, run.run_id, timeout, events, round_ended)
                finished = time.time()
                traffic_after = array_traffic(metrics_url)
                cpu_s = procs.cpu_seconds()
                arrays = None
                if check_result and result_event is not None:
                    reported = client.result(run.run_id)
                    arrays = None if reported is None else reported.arrays
                link_rss = memory.peak_rss
                link_parts = (memory.peak_root_rss / MB, memory.peak_children_rss / MB)
            disk_mb = (memory.peak_disk / MB, directory_bytes(blobs) / MB)
        finally:
            procs.stop_all()
        clients = [json.loads(p.read_text()) for p in stats_files if p.is_file()]
        logs_tail = (tmp / "link.log").read_text(errors="replace")[-2000:]
    starts = {e.round: e.time for e in events if e.kind == "round.start" and e.round}
    ends = {e.round: e for e in events if e.kind == "round.end" and e.round}
    round_s = [ends[r].time - starts[r] for r in sorted(ends) if r in starts]
    replies = [int(ends[r].data.get("train_replies", 0)) for r in sorted(ends)]
    failures = [int(ends[r].data.get("train_failures", 0)) for r in sorted(ends)]
    status = str(end.data.get("status", "")) if end is not None else f"not ended in {timeout} s"
    median = statistics.median(round_s) if round_s else None
    out: dict[str, Any] = {
        "workload": workload.name,
        "nodes": workload.nodes,
        "node_kind": "light asyncio clients" if workload.light else "corolla node",
        "client_processes": processes if workload.light else workload.nodes,
        "params": workload.params,
        "model_mb": workload.params * 4 / MB,
        "rounds": workload.rounds,
        "status": status,
        "round_s_median": median,
        "round_s": round_s,
        "replies_per_round": replies,
        "failures_per_round": failures,
        "lost_replies": workload.rounds * workload.nodes - sum(replies),
        "connect_s": connect_s,
        "submit_to_end_s": finished - submitted,
        "link_peak_rss_mb": link_rss / MB,
        "link_process_peak_rss_mb": link_parts[0],
        "serverapp_peak_rss_mb": link_parts[1],
        "rss_samples": memory.samples,
        "link_blobs_peak_mb": disk_mb[0],
        "link_blobs_end_mb": disk_mb[1],
        "cpu_s": cpu_s,
        "cpu_s_rounds": {
            part: [b[part] - a[part] for a, b in itertools.pairwise(cpu_at_round_ends)]
            for part in ("link", "nodes", "client_apps")
        },
        "cpus": os.cpu_count(),
        "loadavg_1m_before": load_before,
        "auth": auth,
    }
    if isinstance(watcher, PageWatcher):
        out["dashboard"] = watcher.report()
    if status != "finished":
        out["link_log_tail"] = logs_tail
    targets: dict[str, bool] = {"finished": status == "finished"}
    traffic = {
        direction: (moved - traffic_before[direction][0], busy - traffic_before[direction][1])
        for direction, (moved, busy) in traffic_after.items()
    }
    out["array_traffic"] = {
        direction: {"mb": moved / MB, "busy_s": busy}
        for direction, (moved, busy) in traffic.items()
    }
    if not workload.light and median:
        rates = []
        for direction in ("to_nodes", "from_nodes"):
            per_round = _round_rates(at_round_ends, direction)
            out[f"{direction}_mb_per_s"] = rate = statistics.median(per_round or [0.0])
            out[f"{direction}_mb_per_s_rounds"] = per_round
            moved, busy = traffic[direction]
            out[f"{direction}_mb_per_s_whole_run"] = moved / busy / MB if busy > 0 else 0.0
            rates.append(rate)
        out["payload_mb_per_s"] = min(rates)
        targets["payload_mb_per_s"] = min(rates) >= (workload.min_mb_per_s or 0.0)
        out["round_mb_per_s"] = workload.params * 4 * workload.nodes / median / MB
        rss_limit = 3 * workload.params * 4 / MB + 200
        out["link_rss_limit_mb"] = rss_limit
        targets["link_process_peak_rss_mb"] = out["link_process_peak_rss_mb"] <= rss_limit
        delivery = [
            float(ends[r].data.get("train", {}).get("delivery-s", float("nan"))) for r in ends
        ]
        out["latency_ms_median"] = 1000 * statistics.median(delivery) if delivery else None
        out["latency_note"] = "round means of ServerApp -> ClientApp call, array download included"
    if arrays is not None:
        expected = initial_model(workload.params, SEED) + np.float32(workload.rounds * STEP)
        out["result_exact"] = bool(np.array_equal(arrays[ARRAY_NAME], expected))
        targets["result_exact"] = out["result_exact"]
    if workload.light:
        delivery = [d for c in clients for d in c["delivery_s"]]
        out["latency_ms_median"] = 1000 * statistics.median(delivery) if delivery else None
        out["latency_ms_p95"] = 1000 * p95 if (p95 := _percentile(delivery, 95)) else None
        out["latency_ms_max"] = 1000 * max(delivery) if delivery else None
        out["clients"] = {
            key: sum(c[key] for c in clients)
            for key in ("registered", "received", "duplicates", "replied", "errors")
        }
        out["client_errors"] = [e for c in clients for e in c["first_errors"]][:5]
        out["unanswered_messages"] = out["clients"]["received"] - out["clients"]["replied"]
    targets["lost_replies"] = out["lost_replies"] == 0
    if workload.max_round_s is not None and median is not None:
        targets["round_s"] = median <= workload.max_round_s
    if workload.max_latency_ms is not None and out.get("latency_ms_median") is not None:
        targets["latency_ms"] = out["latency_ms_median"] <= workload.max_latency_ms
    out["target_met"] = targets
    out["all_targets_met"] = all(targets.values())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="a")
    parser.add_argument("--nodes", type=int, default=None, help="override the node count")
    parser.add_argument("--rounds", type=int, default=None, help="override the rounds")
    parser.add_argument("--processes", type=int, default=None, help="light client processes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the run")
    parser.add_argument(
        "--no-check", action="store_true", help="skip downloading the final model (workload a)"
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="a link with --auth: nodes with registered keys signing every request, the run "
        "submitted with an account's token",
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="the link also serves its dashboard, and a watcher refreshes an open run page",
    )
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    workload = dataclasses.replace(
        workload, nodes=args.nodes or workload.nodes, rounds=args.rounds or workload.rounds
    )
    processes = args.processes or workload.processes
    report = run_workload(
        workload,
        processes,
        args.timeout,
        check_result=not workload.light and not args.no_check,
        auth=args.auth,
        dashboard=args.dashboard,
    )
    print(json.dumps(report), flush=True)
    return 0 if report["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
