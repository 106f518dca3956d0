"""Framework overhead of Corolla's simulation: seconds per round, startup time, peak memory.

Runs FedAvg over virtual nodes whose "training" adds a constant (see ``_sim_apps``), so the
time measured is the framework's: shipping the model to nodes, running the ClientApp calls,
folding the replies. Prints one JSON object per workload::

    python benchmarks/sim_overhead.py --workload a
    python benchmarks/sim_overhead.py --workload all --backend process --workers 2

Workloads:

- ``a``: 1,000 nodes x 10k float32 parameters, 3 rounds, full participation.
- ``b``: 100 nodes x 100k parameters, 5 rounds.
- ``c``: 10 nodes x 25M parameters (100 MB), 2 rounds; also times copying the model 20
  times in memory (``np.copyto``), the yardstick of memory traffic on this machine.
- ``d``: 100,000 nodes, 1% sampled per round, 10k parameters, 3 rounds.

Figures:

- ``round_s_median``: median over rounds of the time from ``round.start`` to ``round.end``.
- ``startup_s``: from the call of ``run_simulation`` to the first ``round.start``, worker
  processes' spawn and app loading included.
- ``peak_rss_mb``: the largest sum, over this process and all its descendants (workers,
  the shared-memory resource tracker), of resident set sizes, sampled every 20 ms. Shared
  memory pages are counted once in every process that maps them, so this overstates what
  the machine gives; ``peak_pss_mb`` is the same sum of proportional set sizes (shared
  pages split among the processes mapping them), closer to the true footprint, sampled
  every 200 ms (``--no-pss`` skips it).
- ``copy20_s`` and ``round_over_copy20`` (workload c), ``target_met`` (one boolean per
  target of the workload, exactness of the result included) and ``loadavg_1m_before`` (how
  busy the machine was).

The exit status is 1 if a final model is not exactly ``initial + rounds * 0.5``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _sim_apps  # noqa: E402

from corolla.core import Event  # noqa: E402
from corolla.project import ComponentRef  # noqa: E402
from corolla.simulation import run_simulation  # noqa: E402

MB = 1024 * 1024
STEP = 0.5
SEED = 7


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    nodes: int
    params: int
    rounds: int
    fraction: float = 1.0
    max_round_s: float | None = None
    max_startup_s: float | None = None
    max_rss_mb: float | None = None
    max_copy20_ratio: float | None = None


WORKLOADS = {
    "a": Workload("a", 1_000, 10_000, 3, max_round_s=0.3, max_startup_s=3.0, max_rss_mb=400),
    "b": Workload("b", 100, 100_000, 5),
    "c": Workload("c", 10, 25_000_000, 2, max_copy20_ratio=3.0),
    "d": Workload("d", 100_000, 10_000, 3, fraction=0.01, max_rss_mb=1536),
}


class MemorySampler:
    """Samples the summed RSS and PSS of this process and its descendants in a thread.

    RSS is read every ``interval`` seconds (``/proc/<pid>/statm``, cheap). PSS needs a walk
    of every page table (``smaps_rollup``), which holds the memory map lock of the process
    and slows its page faults, so it is read every ``pss_every`` samples only. Finding the
    descendants scans every process of the machine, so that is done every ``rescan`` s.
    """

    def __init__(
        self, interval: float = 0.02, rescan: float = 0.25, pss: bool = True, pss_every: int = 10
    ) -> None:
        self.interval = interval
        self.rescan = rescan
        self.pss = pss
        self.pss_every = pss_every
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._root = psutil.Process()
        self._processes: list[psutil.Process] = [self._root]
        self._scanned = 0.0

    def sample(self) -> None:
        now = time.monotonic()
        if now - self._scanned >= self.rescan:
            self._processes = [self._root, *self._root.children(recursive=True)]
            self._scanned = now
        with_pss = self.pss and self.samples % self.pss_every == 0
        rss = pss = alive = 0
        for process in self._processes:
            try:
                if with_pss:
                    full = process.memory_full_info()
                    rss += full.rss
                    pss += full.pss
                else:
                    rss += process.memory_info().rss
                alive += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        self.peak_rss = max(self.peak_rss, rss)
        if with_pss:
            self.peak_pss = max(self.peak_pss, pss)
        self.peak_processes = max(self.peak_processes, alive)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


class RoundClock:
    """An event sink timing rounds against the start of the run."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.run_start: float | None = None
        self.round_start: dict[int, float] = {}
        self.round_end: dict[int, float] = {}

    def __call__(self, event: Event) -> None:
        now = time.perf_counter()
        if event.kind == "run.start":
            self.run_start = now
        elif event.kind == "round.start" and event.round is not None:
            self.round_start[event.round] = now
        elif event.kind == "round.end" and event.round is not None:
            self.round_end[event.round] = now

    def round_seconds(self) -> list[float]:
        return [self.round_end[r] - self.round_start[r] for r in sorted(self.round_end)]


def copy_seconds(model: np.ndarray, copies: int = 20, repeats: int = 3) -> float:
    """Median time to ``np.copyto`` the model ``copies`` times into a preallocated array."""
    target = np.empty_like(model)
    np.copyto(target, model)  # fault the target's pages in first
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(copies):
            np.copyto(target, model)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def run_workload(
    workload: Workload, backend: str, workers: int | None, rounds: int | None, pss: bool
) -> dict[str, Any]:
    rounds = rounds or workload.rounds
    run_config = {
        "params": workload.params,
        "rounds": rounds,
        "fraction": workload.fraction,
        "step": STEP,
        "seed": SEED,
    }
    load_before = round(os.getloadavg()[0], 2)
    server = ComponentRef("_sim_apps:server", str(HERE))
    client = ComponentRef("_sim_apps:client", str(HERE))
    with MemorySampler(pss=pss) as memory:
        clock = RoundClock()
        result = run_simulation(
            server,
            client,
            workload.nodes,
            backend=backend,
            num_workers=workers,
            run_config=run_config,
            events=clock,
        )
        total_s = time.perf_counter() - clock.started
    if result.arrays is None or result.history is None:
        raise SystemExit("the simulation left no final arrays")
    expected = _sim_apps.initial_model(workload.params, SEED) + np.float32(rounds * STEP)
    exact = bool(np.array_equal(result.arrays[_sim_apps.ARRAY_NAME], expected))
    replies = [summary.train_replies for summary in result.history.rounds]
    failures = [summary.train_failures for summary in result.history.rounds]
    round_s = clock.round_seconds()
    first_round = min(clock.round_start.values())
    out: dict[str, Any] = {
        "workload": workload.name,
        "backend": backend,
        "workers": 1 if backend == "inline" else (workers or os.cpu_count() or 1),
        "nodes": workload.nodes,
        "params": workload.params,
        "rounds": rounds,
        "fraction": workload.fraction,
        "replies_per_round": replies,
        "result_exact": exact and not any(failures),
        "round_s_median": statistics.median(round_s),
        "round_s": round_s,
        "startup_s": first_round - clock.started,
        "executor_start_s": (clock.run_start or first_round) - clock.started,
        "total_s": total_s,
        "peak_rss_mb": memory.peak_rss / MB,
        "peak_pss_mb": memory.peak_pss / MB if pss else None,
        "peak_processes": memory.peak_processes,
        "memory_samples": memory.samples,
        "cpus": os.cpu_count(),
        "loadavg_1m_before": load_before,
    }
    targets: dict[str, bool] = {"result_exact": out["result_exact"]}
    if workload.max_round_s is not None:
        targets["round_s"] = out["round_s_median"] <= workload.max_round_s
    if workload.max_startup_s is not None:
        targets["startup_s"] = out["startup_s"] <= workload.max_startup_s
    if workload.max_rss_mb is not None:
        targets["peak_rss_mb"] = out["peak_rss_mb"] <= workload.max_rss_mb
    if workload.max_copy20_ratio is not None:
        copy20 = copy_seconds(result.arrays[_sim_apps.ARRAY_NAME])
        out["copy20_s"] = copy20
        out["round_over_copy20"] = out["round_s_median"] / copy20
        targets["round_over_copy20"] = out["round_over_copy20"] <= workload.max_copy20_ratio
    out["target_met"] = targets
    out["all_targets_met"] = all(targets.values())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--backend", choices=["inline", "process"], default="process")
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--rounds", type=int, default=None, help="override the rounds")
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="untimed runs of the same workload first (this VM's first touch of memory "
        "is slow; a warm-up leaves the figures to the framework)",
    )
    parser.add_argument(
        "--no-pss", action="store_true", help="sample RSS only (PSS reads smaps, a little slower)"
    )
    args = parser.parse_args(argv)
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    ok = True
    for name in names:
        for _ in range(args.warmup):
            run_workload(WORKLOADS[name], args.backend, args.workers, args.rounds, False)
        report = run_workload(
            WORKLOADS[name], args.backend, args.workers, args.rounds, not args.no_pss
        )
        report["warmup_runs"] = args.warmup
        ok = ok and report["result_exact"]
        print(json.dumps(report), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
