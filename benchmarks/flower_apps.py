"""One Flower app under Flower's simulation and under Corolla's, beside the same workload
written as a native Corolla app. Prints one JSON object::

    python benchmarks/flower_apps.py                  # 1,000 nodes x 10k parameters
    python benchmarks/flower_apps.py --repeats 3      # Corolla's two runs three times each

The Flower app is ``_flower_apps``: a Message-API ClientApp whose "training" adds 0.5 to
every parameter, and a ServerApp running ``flwr.serverapp.strategy.FedAvg`` (evaluation
off, every node sampled, integer example counts). The native app is ``_sim_apps``, the same
work on Corolla's API, measured by ``sim_overhead``. Each run happens in a fresh
subprocess with the default settings a user gets:

- ``flower``: Flower's ``run_simulation`` on Ray (127.0.0.1, 0.5 CPU per virtual client),
  through ``compare_flower``;
- ``corolla``: the same ``ServerApp`` and ``ClientApp`` objects run by Corolla's
  simulation through the adapters of ``corolla.flower``, as ``corolla run`` runs a Flower
  project (process backend, one worker per core);
- ``native``: ``sim_overhead``'s workload on the same backend.

Figures (medians over rounds; with ``--repeats``, the median of the runs' medians):

- ``flower_round_s`` and ``corolla_round_s``: from the strategy's ``configure_train`` to the
  end of its ``aggregate_train`` (``_flower_apps.TimedFedAvg``), the same points in both;
- ``native_round_s``: from Corolla's ``round.start`` event to its ``round.end``;
- ``flower_over_corolla`` (target >= 20) and ``adapter_cost`` = ``corolla_round_s /
  native_round_s - 1`` (target <= 0.25).

``corolla_max_abs_error`` is how far the Flower app's final model is from ``initial +
rounds * 0.5`` (Flower's FedAvg averages in float32). Without ``flwr[simulation]`` the
Flower run is skipped and said so; without ``flwr`` the script prints why and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import compare_flower  # noqa: E402
import sim_overhead  # noqa: E402

TARGET_FLOWER_OVER_COROLLA = 20.0
TARGET_ADAPTER_COST = 0.25


def run_corolla(workload: sim_overhead.Workload, rounds: int) -> dict[str, Any]:
    """Run the Flower app through Corolla's simulation in this process; its figures."""
    import numpy as np

    os.environ["FLOWER_BENCH_CONFIG"] = json.dumps(
        {
            "params": workload.params,
            "rounds": rounds,
            "fraction": workload.fraction,
            "seed": sim_overhead.SEED,
        }
    )
    import _flower_apps

    from corolla.project import ComponentRef
    from corolla.simulation import run_simulation

    # The adapters ``corolla run`` puts around a Flower project's components.
    server = ComponentRef("_flower_apps:server", str(HERE), "corolla.flower:server_app_adapter")
    client = ComponentRef("_flower_apps:client", str(HERE), "corolla.flower:client_app_adapter")
    load_before = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    run_simulation(server, client, workload.nodes, backend="process")
    total_s = time.perf_counter() - started
    record = _flower_apps.RECORD
    ends = record["round_end"]
    round_s = [ends[r] - record["round_start"][r] for r in sorted(ends)]
    expected = _flower_apps.initial_model(workload.params, sim_overhead.SEED)
    expected = expected + np.float32(rounds * sim_overhead.STEP)
    arrays = record["arrays"]
    return {
        "framework": "corolla",
        "nodes": workload.nodes,
        "params": workload.params,
        "rounds": rounds,
        "rounds_completed": len(round_s),
        "round_s_median": statistics.median(round_s) if round_s else None,
        "round_s": round_s,
        "total_s": total_s,
        "max_abs_error": (
            float(np.max(np.abs(arrays[0].astype(np.float64) - expected)))
            if arrays is not None
            else None
        ),
        "loadavg_1m_before": load_before,
    }


def _median_of(runs: list[dict[str, Any]]) -> float | None:
    medians = [run["round_s_median"] for run in runs if run.get("round_s_median") is not None]
    return statistics.median(medians) if medians else None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def measure(name: str, rounds: int, repeats: int, timeout: float) -> dict[str, Any]:
    workload = sim_overhead.WORKLOADS[name]
    common = ["--workload", name, "--rounds", str(rounds)]
    script = str(Path(__file__).resolve())
    native_runs, corolla_runs = [], []
    for _ in range(repeats):
        native_runs.append(
            compare_flower._run_json(
                [sys.executable, str(HERE / "sim_overhead.py"), *common, "--no-pss"], timeout
            )
        )
        corolla_runs.append(
            compare_flower._run_json([sys.executable, script, "--corolla-only", *common], timeout)
        )
    missing = compare_flower.flower_missing()
    flower: dict[str, Any] = (
        {"skipped": missing}
        if missing is not None
        else compare_flower._run_json(
            [sys.executable, str(HERE / "compare_flower.py"), "--flower-only", *common, "--no-pss"],
            timeout,
        )
    )
    flower_round_s = flower.get("round_s_median")
    corolla_round_s = _median_of(corolla_runs)
    native_round_s = _median_of(native_runs)
    out: dict[str, Any] = {
        "workload": name,
        "nodes": workload.nodes,
        "params": workload.params,
        "rounds": rounds,
        "repeats": repeats,
        "flower_round_s": flower_round_s,
        "corolla_round_s": corolla_round_s,
        "native_round_s": native_round_s,
        "flower_over_corolla": compare_flower._ratio(flower_round_s, corolla_round_s),
        "adapter_cost": (
            corolla_round_s / native_round_s - 1 if corolla_round_s and native_round_s else None
        ),
        "corolla_max_abs_error": max(
            (run.get("max_abs_error") or 0.0 for run in corolla_runs), default=None
        ),
        "versions": {p: _version(p) for p in ("flwr", "ray", "numpy")},
        "cpus": os.cpu_count(),
        "flower": flower,
        "corolla": corolla_runs,
        "native": native_runs,
    }
    targets: dict[str, bool] = {}
    if out["flower_over_corolla"] is not None:
        targets["flower_over_corolla"] = out["flower_over_corolla"] >= TARGET_FLOWER_OVER_COROLLA
    if out["adapter_cost"] is not None:
        targets["adapter_cost"] = out["adapter_cost"] <= TARGET_ADAPTER_COST
    out["target_met"] = targets
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=list(sim_overhead.WORKLOADS), default="a")
    parser.add_argument("--rounds", type=int, default=None, help="default: the workload's")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of the Corolla and native apps each"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=compare_flower.FLOWER_TIMEOUT_S,
        help="seconds per framework run",
    )
    parser.add_argument("--corolla-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("flwr") is None:
        print(json.dumps({"flower_available": False, "reason": "flwr is not installed"}))
        return 0
    workload = sim_overhead.WORKLOADS[args.workload]
    rounds = args.rounds or workload.rounds
    if args.corolla_only:
        print(json.dumps(run_corolla(workload, rounds)), flush=True)
        return 0
    print(json.dumps(measure(args.workload, rounds, args.repeats, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
