"""The workloads of ``sim_overhead`` run through Corolla and through Flower's simulation.

Prints one JSON object per workload with both sets of figures and their ratios::

    python benchmarks/compare_flower.py --workload a --workload b

Each run happens in a fresh subprocess (memory and startup are then each framework's
alone): ``sim_overhead.py`` for Corolla, this script with ``--flower-only`` for Flower.
Flower runs on Ray, started locally on 127.0.0.1 without its dashboard, with 0.5 CPU per
virtual client. Without ``flwr[simulation]`` installed it prints a JSON object saying so
and exits 0. Flower is not a dependency of the project: install it in a separate
environment together with Corolla (``pip install 'flwr[simulation]' -e .``).

Flower figures are taken as in ``sim_overhead``: a round lasts from the strategy's
``configure_train`` to the end of its ``aggregate_train``; memory is the summed RSS (and
PSS) of this process and its descendants, Ray's processes included. Flower's ServerApp
starts its first round while Ray is still starting, so its first round includes Ray's
startup, and ``startup_s`` lasts from the call of ``run_simulation`` to the first
ClientApp call (the replies carry the wall-clock time of their call). Flower averages in
float32, so its ``result_exact`` may be false; ``max_abs_error`` says by how much.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import sim_overhead  # noqa: E402

FLOWER_TIMEOUT_S = 3600


def flower_missing() -> str | None:
    """Why Flower's simulation cannot run here, or None if it can."""
    for module, extra in [("flwr", "flwr"), ("ray", "flwr[simulation]")]:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install '{extra}')"
    return None


def ray_backend_config() -> dict[str, Any]:
    """Flower's simulation backend as the benchmarks run it: Ray on 127.0.0.1 without its
    dashboard, every core, 0.5 CPU per virtual client."""
    return {
        "client_resources": {"num_cpus": 0.5, "num_gpus": 0.0},
        "init_args": {
            "address": "local",
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
            "num_cpus": os.cpu_count() or 1,
        },
    }


def run_flower(workload: sim_overhead.Workload, rounds: int, pss: bool) -> dict[str, Any]:
    """Run one workload through Flower's simulation in this process; return its figures."""
    import logging

    import _flower_apps
    import numpy as np
    from flwr.simulation import run_simulation

    rounds = rounds or workload.rounds
    os.environ[_flower_apps.CONFIG_VARIABLE] = json.dumps(
        {
            "params": workload.params,
            "rounds": rounds,
            "fraction": workload.fraction,
            "seed": sim_overhead.SEED,
        }
    )
    logging.getLogger("flwr").setLevel(logging.WARNING)
    backend_config = ray_backend_config()
    load_before = round(os.getloadavg()[0], 2)
    record = _flower_apps.RECORD
    with sim_overhead.MemorySampler(pss=pss) as memory:
        started = time.perf_counter()
        started_wall = time.time()
        run_simulation(
            server_app=_flower_apps.server,
            client_app=_flower_apps.client,
            num_supernodes=workload.nodes,
            backend_config=backend_config,  # type: ignore[arg-type]
        )
        total_s = time.perf_counter() - started
    ends = record["round_end"]
    round_s = [ends[r] - record["round_start"][r] for r in sorted(ends)]
    out: dict[str, Any] = {
        "framework": "flower",
        "workload": workload.name,
        "nodes": workload.nodes,
        "params": workload.params,
        "rounds": rounds,
        "rounds_completed": len(round_s),
        "round_s_median": statistics.median(round_s) if round_s else None,
        "round_s": round_s,
        "startup_s": (
            record["first_call"] - started_wall if record["first_call"] is not None else None
        ),
        "total_s": total_s,
        "peak_rss_mb": memory.peak_rss / sim_overhead.MB,
        "peak_pss_mb": memory.peak_pss / sim_overhead.MB if pss else None,
        "peak_processes": memory.peak_processes,
        "cpus": os.cpu_count(),
        "loadavg_1m_before": load_before,
    }
    arrays = record["arrays"]
    if arrays is not None:
        expected = sim_overhead._sim_apps.initial_model(workload.params, sim_overhead.SEED)
        expected = expected + np.float32(rounds * sim_overhead.STEP)
        out["result_exact"] = bool(np.array_equal(arrays[0], expected))
        out["max_abs_error"] = float(np.max(np.abs(arrays[0].astype(np.float64) - expected)))
    else:
        out["result_exact"] = False
    return out


def _run_json(command: list[str], timeout: float) -> dict[str, Any]:
    """Run a command that prints a JSON object last; return it, or the failure."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    return {"error": f"exit code {done.returncode}", "stderr_tail": done.stderr[-2000:]}


def _ratio(numerator: Any, denominator: Any) -> float | None:
    if not isinstance(numerator, int | float) or not isinstance(denominator, int | float):
        return None
    return numerator / denominator if denominator else None


def compare(name: str, rounds: int | None, pss: bool, timeout: float) -> dict[str, Any]:
    common = ["--workload", name] + (["--rounds", str(rounds)] if rounds else [])
    common += [] if pss else ["--no-pss"]
    corolla = _run_json([sys.executable, str(HERE / "sim_overhead.py"), *common], timeout)
    script = str(Path(__file__).resolve())
    flower = _run_json([sys.executable, script, "--flower-only", *common], timeout)
    figures = ["round_s_median", "startup_s", "peak_rss_mb", "peak_pss_mb"]
    return {
        "workload": name,
        "corolla": corolla,
        "flower": flower,
        "corolla_over_flower": {f: _ratio(corolla.get(f), flower.get(f)) for f in figures},
        "flower_over_corolla": {f: _ratio(flower.get(f), corolla.get(f)) for f in figures},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workload",
        action="append",
        choices=list(sim_overhead.WORKLOADS),
        help="a workload to compare (repeatable; default: a and b)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="override the rounds")
    parser.add_argument("--no-pss", action="store_true", help="sample RSS only")
    parser.add_argument(
        "--timeout", type=float, default=FLOWER_TIMEOUT_S, help="seconds per framework run"
    )
    parser.add_argument("--flower-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = args.workload or ["a", "b"]
    missing = flower_missing()
    if missing is not None:
        print(json.dumps({"flower_available": False, "reason": missing, "workloads": names}))
        return 0
    if args.flower_only:
        workload = sim_overhead.WORKLOADS[names[0]]
        print(json.dumps(run_flower(workload, args.rounds or 0, not args.no_pss)), flush=True)
        return 0
    for name in names:
        print(json.dumps(compare(name, args.rounds, not args.no_pss, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
