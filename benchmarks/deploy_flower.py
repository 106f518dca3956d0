"""Flower's deployment runtime measured as ``benchmarks/deploy.py`` measures Corolla's.

Runs ``flower-superlink`` and N ``flower-supernode`` processes on 127.0.0.1 (insecure),
submits ``_deploy_flower_app/`` (Flower's message-API FedAvg over a "training" that adds
0.5 to every parameter, every node in every round, weight 1) with ``flwr run``, waits for
the run to end, stops every process it started, and prints one JSON object. flwr comes
with Corolla's ``flower`` extra (``make venv`` installs it)::

    .venv/bin/python benchmarks/deploy_flower.py --workload a
    .venv/bin/python benchmarks/deploy_flower.py --workload b --nodes 20
    .venv/bin/python benchmarks/deploy_flower.py --workload c

Workloads (those of ``deploy.py``, as far as real SuperNode processes go on two cores):

- ``a``: a 100 MB model (25M float32), 4 SuperNodes, 3 rounds.
- ``b``: 20 SuperNodes (each a ``flower-supernode`` with its own ``flower-superexec``
  and, during the run, its own ``flwr-clientapp`` process), 5 rounds of 10k parameters.
- ``c``: 5 SuperNodes, 30 rounds of 10k parameters: the delivery delay of messages.

Flower 1.41 serves the Fleet, Control and ServerAppIo ("Runtime") APIs of the SuperLink
over HTTP on one port (``--port``), and each SuperNode serves its ClientAppIo API on its
own ``--port``. ``flwr run`` reads SuperLink connections from ``$FLWR_HOME/config.toml``
(no longer from the app's ``pyproject.toml``), so this script writes one, ``bench``,
pointing at the SuperLink, into a temporary ``FLWR_HOME``. The SuperLink keeps its state
in memory (its default) and does not install app dependencies
(``--disable-runtime-dependency-installation``).

Figures:

- ``round_s_median``: median over rounds of the time from the strategy's
  ``configure_train`` to the end of its ``aggregate_train``, stamped in the ServerApp
  process (Flower logs only the strategy's total, ``strategy_s``).
- ``round_mb_per_s`` (a): ``model bytes x nodes / round_s_median`` (Flower exposes no
  measure of its SuperLink's transfers alone, so this is the figure to set beside
  ``deploy.py``'s ``round_mb_per_s``).
- ``link_peak_rss_mb``: the largest sum of resident set sizes of the SuperLink process and
  its descendants (SuperExec and the run's ServerApp), sampled every 50 ms from ``/proc``.
- ``lost_replies``: ``rounds x nodes`` minus the train replies without error the rounds
  aggregated.
- ``latency_ms_median`` / ``latency_ms_p95``: from ``time.time()`` stamped into the train
  config just before the ServerApp builds a round's messages to the call of the ClientApp
  (same clock). It includes the SuperNode's polling (every 3 s when idle), the download of
  the message and its arrays, and the start of a ``flwr-clientapp`` process for the message
  (SuperExec polls every second). The ServerApp itself polls for replies every 3 s.
- ``all_peak_rss_mb`` / ``all_peak_processes``: the same for this process and everything
  below it (SuperLink, SuperNodes, SuperExecs, ServerApp, ClientApps), every 200 ms.
- ``result_exact`` (a): the final model is exactly ``initial + rounds x step``.

The exit status is 1 if the run did not finish.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
APP = HERE / "_deploy_flower_app"
sys.path.insert(0, str(APP))

try:
    from deploy_flower_bench import initial_model
except ModuleNotFoundError as exc:  # run with an interpreter that lacks Flower
    print(json.dumps({"status": f"cannot run: {exc}", "hint": "pip install 'corolla[flower]'"}))
    sys.exit(1)

MB = 1024 * 1024
STEP = 0.5
SEED = 7
STARTUP_S = 180.0
STOP_S = 15.0
CLI_S = 120.0
CONNECTION = "bench"
PAGE = os.sysconf("SC_PAGE_SIZE")
PR_SET_CHILD_SUBREAPER = 36


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    nodes: int
    params: int
    rounds: int


WORKLOADS = {
    "a": Workload("a", 4, 25_000_000, 3),
    "b": Workload("b", 20, 10_000, 5),
    "c": Workload("c", 5, 10_000, 30),
}


def _parents() -> dict[int, int]:
    """The parent of every process, from ``/proc/<pid>/stat``."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
    return parents


def _descendants(root: int, parents: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class TreeMemory:
    """Samples the summed RSS of a process and its descendants every ``interval`` s in a
    thread (the process table is re-read every fifth sample); also the peaks of the
    process alone and of its descendants alone."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.peak_rss = 0
        self.peak_root_rss = 0
        self.peak_children_rss = 0
        self.peak_processes = 0
        self.samples = 0
        self._root = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="link-memory", daemon=True)

    def _loop(self) -> None:
        children: list[int] = []
        while not self._stop.wait(self._interval):
            if self.samples % 5 == 0:
                children = _descendants(self._root, _parents())
            root = _rss(self._root)
            rest = sum(_rss(pid) for pid in children)
            self.peak_rss = max(self.peak_rss, root + rest)
            self.peak_root_rss = max(self.peak_root_rss, root)
            self.peak_children_rss = max(self.peak_children_rss, rest)
            self.peak_processes = max(self.peak_processes, 1 + len(children))
            self.samples += 1

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Processes:
    """Child processes, each in its own session, that are always stopped, then killed.

    Flower's SuperLink and SuperNode start their SuperExec, ServerApp and ClientApp
    processes in new sessions, so signalling a process group does not reach them. This
    process makes itself a child subreaper: whatever they leave behind is re-parented
    here, and ``stop_all`` signals every remaining descendant by its pid and reaps it.
    """

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self._logs = logs
        self._env = env
        self.children: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self._logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        child = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, env=self._env, start_new_session=True
        )
        log.close()
        self.children.append(child)
        self.names.append(name)
        return child

    def stop_all(self) -> list[str]:
        """Stop every process started and every descendant; return what had to be killed."""
        killed = []
        # Nodes first, the SuperLink last, so that the nodes do not spin reconnecting.
        for child in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for name, child in zip(reversed(self.names), reversed(self.children), strict=True):
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(STOP_S)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            leftovers = _descendants(os.getpid(), _parents())
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if sig == signal.SIGKILL and leftovers:
                killed.append(f"{len(leftovers)} descendants")
            self._reap(time.monotonic() + (STOP_S if leftovers else 0.0))
        return killed

    @staticmethod
    def _reap(deadline: float) -> None:
        """Collect exited descendants until none is left or ``deadline`` passes."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)

    def dead(self) -> list[str]:
        return [n for n, c in zip(self.names, self.children, strict=True) if c.poll() is not None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(condition: Callable[[], bool], timeout: float, what: str, procs: Processes) -> float:
    """Poll ``condition()`` until true; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if procs.dead():
            raise RuntimeError(f"processes exited early: {procs.dead()}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what} within {timeout} s")
        time.sleep(0.2)
    return time.monotonic() - started


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _flwr(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run the ``flwr`` CLI with JSON output; return its JSON object."""
    flwr = str(Path(sys.executable).parent / "flwr")
    done = subprocess.run(
        [flwr, *args, "--format", "json"], env=env, capture_output=True, timeout=CLI_S, check=False
    )
    text = done.stdout.decode(errors="replace")
    start = text.find("{")
    try:
        return dict(json.loads(text[start:])) if start >= 0 else {"output": text}
    except json.JSONDecodeError:
        return {"output": text[-2000:], "stderr": done.stderr.decode(errors="replace")[-2000:]}


def _flwr_env(home: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # SuperLink and SuperNode spawn Flower tools
    return dict(
        os.environ,
        FLWR_HOME=str(home),
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PYTHONUNBUFFERED="1",
    )


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


class LogWatch:
    """Reads a growing log file from where it left off and counts what matters."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.registered = 0
        self.ended: set[str] = set()
        self._offset = 0
        self._partial = b""

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as log:
            log.seek(self._offset)
            data = self._partial + log.read()
            self._offset = log.tell()
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            if b"Activated node_id=" in line:
                self.registered += 1
            elif match := re.search(rb"Finished task \d+ of run (\d+)", line):
                self.ended.add(match.group(1).decode())

    def tail(self) -> str:
        if not self.path.is_file():
            return ""
        return self.path.read_bytes()[-2000:].decode(errors="replace")


@dataclasses.dataclass
class Outcome:
    """What a run left behind, filled in as it goes."""

    status: dict[str, Any] = dataclasses.field(default_factory=dict)
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    connect_s: float | None = None
    submit_s: float | None = None
    run_s: float | None = None


def _drive(
    workload: Workload,
    procs: Processes,
    env: dict[str, str],
    ports: tuple[int, int],
    out: Path,
    log: LogWatch,
    timeout: float,
    check_result: bool,
    outcome: Outcome,
) -> None:
    """Start the SuperNodes, submit the app, wait for the run to end."""
    link_port, node_port = ports
    bin_dir = Path(sys.executable).parent
    _wait(lambda: _listening(link_port), STARTUP_S, "the SuperLink did not listen", procs)
    for i in range(workload.nodes):
        procs.start(
            f"supernode{i}", str(bin_dir / "flower-supernode"), "--insecure",
            "--superlink", f"127.0.0.1:{link_port}",
            "--port", str(node_port + i if node_port else _free_port()),
            "--node-config", f"partition-id={i} num-partitions={workload.nodes}",
        )  # fmt: skip

    def registered() -> bool:
        log.poll()
        return log.registered >= workload.nodes

    outcome.connect_s = _wait(
        registered, STARTUP_S, f"{workload.nodes} SuperNodes did not register", procs
    )
    run_config = {
        "params": workload.params,
        "rounds": workload.rounds,
        "nodes": workload.nodes,
        "step": STEP,
        "seed": SEED,
        "out": str(out),
        "save-final": check_result,
        "round-timeout": timeout,
    }
    overrides = " ".join(f"{k}={json.dumps(v)}" for k, v in run_config.items())
    submitted = time.monotonic()
    started = _flwr(env, "run", str(APP), CONNECTION, "--run-config", overrides)
    outcome.submit_s = time.monotonic() - submitted
    run_id = str(started.get("run-id") or "")
    if not run_id:
        raise RuntimeError(f"flwr run failed: {started}")

    def ended() -> bool:
        log.poll()
        return run_id in log.ended

    try:
        _wait(ended, timeout, f"run {run_id} did not end", procs)
    finally:
        outcome.run_s = time.monotonic() - submitted
        if (out / "report.json").is_file():
            outcome.report = json.loads((out / "report.json").read_text())
    runs = _flwr(env, "ls", CONNECTION, "--run-id", run_id).get("runs") or [{}]
    outcome.status = dict(runs[0])


def run_workload(
    workload: Workload, link_port: int, node_port: int, timeout: float, check_result: bool
) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    outcome = Outcome()
    arrays = None
    with tempfile.TemporaryDirectory(prefix="corolla-deploy-flower-") as tmp_name:
        tmp = Path(tmp_name)
        home, out = tmp / "home", tmp / "out"
        home.mkdir()
        out.mkdir()
        link_port = link_port or _free_port()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{link_port}"\ninsecure = true\n'
        )
        env = _flwr_env(home)
        procs = Processes(tmp, env)
        log = LogWatch(tmp / "superlink.log")
        try:
            link = procs.start(
                "superlink", str(Path(sys.executable).parent / "flower-superlink"),
                "--insecure", "--port", str(link_port),
                "--disable-runtime-dependency-installation",
            )  # fmt: skip
            with TreeMemory(link.pid) as memory, TreeMemory(os.getpid(), 0.2) as everything:
                try:
                    _drive(
                        workload, procs, env, (link_port, node_port), out, log,
                        timeout, check_result, outcome,
                    )  # fmt: skip
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    outcome.status = {"status": "not finished", "status-details": str(exc)}
            if (out / "final.npy").is_file():
                arrays = np.load(out / "final.npy")
        finally:
            killed = procs.stop_all()
        link_tail = log.tail()
    return _figures(
        workload,
        outcome,
        arrays,
        {
            "connect_s": outcome.connect_s,
            "submit_s": outcome.submit_s,
            "submit_to_end_s": outcome.run_s,
            "link_peak_rss_mb": memory.peak_rss / MB,
            "link_process_peak_rss_mb": memory.peak_root_rss / MB,
            "serverapp_peak_rss_mb": memory.peak_children_rss / MB,
            "rss_samples": memory.samples,
            "all_peak_rss_mb": everything.peak_rss / MB,
            "all_peak_processes": everything.peak_processes,
            "killed_at_stop": killed,
            "loadavg_1m_before": load_before,
            "link_log_tail": link_tail,
        },
    )


def _figures(
    workload: Workload, outcome: Outcome, arrays: np.ndarray | None, measured: dict[str, Any]
) -> dict[str, Any]:
    report, status = outcome.report, outcome.status
    starts = {int(r): float(t) for r, t in report.get("round_start", {}).items()}
    ends = {int(r): float(t) for r, t in report.get("round_end", {}).items()}
    round_s = [ends[r] - starts[r] for r in sorted(ends) if r in starts]
    replies = [int(report.get("replies", {}).get(str(r), 0)) for r in sorted(ends)]
    failures = [int(report.get("errors", {}).get(str(r), 0)) for r in sorted(ends)]
    median = statistics.median(round_s) if round_s else None
    state = str(status.get("status", "unknown"))
    delivery = [float(d) for d in report.get("delivery_s", [])]
    link_tail = measured.pop("link_log_tail")
    out: dict[str, Any] = {
        "workload": workload.name,
        "framework": "flower",
        "flwr_version": version("flwr"),
        "nodes": workload.nodes,
        "node_kind": "flower-supernode (+ flower-superexec, flwr-clientapp)",
        "params": workload.params,
        "model_mb": workload.params * 4 / MB,
        "rounds": workload.rounds,
        "status": "finished" if state == "finished:completed" else state,
        "status_details": status.get("status-details"),
        "round_s_median": median,
        "round_s": round_s,
        "round_s_source": "ServerApp: strategy configure_train start to aggregate_train end",
        "strategy_s": report.get("strategy_s"),
        "replies_per_round": replies,
        "failures_per_round": failures,
        "lost_replies": workload.rounds * workload.nodes - sum(replies),
        "latency_ms_median": 1000 * statistics.median(delivery) if delivery else None,
        "latency_ms_p95": 1000 * p95 if (p95 := _percentile(delivery, 95)) else None,
        "latency_ms_max": 1000 * max(delivery) if delivery else None,
        "latency_samples": len(delivery),
        "latency_note": "ServerApp stamp before building a round's messages -> ClientApp call",
        "network_traffic": status.get("network-traffic"),
        **measured,
        "cpus": os.cpu_count(),
    }
    if median:
        out["round_mb_per_s"] = workload.params * 4 * workload.nodes / median / MB
    if arrays is not None:
        expected = initial_model(workload.params, SEED) + np.float32(workload.rounds * STEP)
        out["result_exact"] = bool(np.array_equal(arrays, expected))
        out["max_abs_error"] = float(np.max(np.abs(arrays.astype(np.float64) - expected)))
    if out["status"] != "finished":
        out["link_log_tail"] = link_tail
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="a")
    parser.add_argument("--nodes", type=int, default=None, help="override the node count")
    parser.add_argument("--rounds", type=int, default=None, help="override the rounds")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the run")
    parser.add_argument(
        "--link-port", type=int, default=0, help="SuperLink HTTP port (default: a free one)"
    )
    parser.add_argument(
        "--node-port",
        type=int,
        default=0,
        help="first SuperNode ClientAppIo port, one per node from there (default: free ones)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip saving and comparing the final model"
    )
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    workload = dataclasses.replace(
        workload, nodes=args.nodes or workload.nodes, rounds=args.rounds or workload.rounds
    )
    check = workload.name == "a" and not args.no_check
    report = run_workload(workload, args.link_port, args.node_port, args.timeout, check)
    print(json.dumps(report), flush=True)
    return 0 if report["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
