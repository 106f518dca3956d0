"""What privacy costs: FedAvg's round plain, under SecAgg+, under central DP, and under
Flower's own SecAgg+, on one workload in one run. Prints one JSON object::

    python benchmarks/privacy.py                        # 100 nodes x 100k parameters
    python benchmarks/privacy.py --scaling 100 300 1000 # and SecAgg+'s server cost by nodes
    python benchmarks/privacy.py --no-flower --rounds 2

The apps are ``_privacy_apps`` (FedAvg over a "training" that adds a constant step, every
node sampled) in Corolla's simulation with the settings a user gets by default (process
backend, one worker per core), and ``_flower_secagg_apps`` in Flower's simulation (Ray on
127.0.0.1, 0.5 CPU per virtual client), in a subprocess, with the same graph degree and
threshold as Corolla's default for the number of nodes.

Figures (medians over rounds of the time from a round's start to its end: Corolla's
``round.start`` and ``round.end`` events, each mechanism run ``--repeats`` times in turns
and the median of the runs' medians taken; for Flower, its strategy's ``configure_fit`` to
the end of ``aggregate_fit``, after the unmasking):

- ``plain_round_s``, ``secagg_round_s`` (target <= 3 x plain), ``dp_round_s`` (target
  within 10% of plain), ``flower_secagg_round_s`` (with ``flwr[simulation]`` installed);
- ``secagg_dp_round_s``: SecAgg+ around central DP with the noise added by the nodes
  (``SecAggPlus(CentralDP(..., clipping="client"))``), no target of its own;
- ``secagg_over_plain``, ``dp_over_plain``, ``secagg_dp_over_plain``,
  ``flower_secagg_over_secagg``;
- ``secagg_max_abs_error``: how far SecAgg+'s final model is from the plain run's (its
  quantization error), and ``secagg_error_bound``, the bound it must stay within (the
  quantization bound of each round, plus the float32 rounding of each round's model);
- ``secagg_scaling`` (with ``--scaling``): for each number of nodes, the SecAgg+ round's
  time and ``server_s``, the server's own work of the round (rebuilding the self-mask
  seeds and the dropped nodes' keys, and expanding their masks: the ``secagg.unmasked``
  event), beside the plain round's time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _privacy_apps  # noqa: E402
from compare_flower import flower_missing, ray_backend_config  # noqa: E402
from sim_overhead import RoundClock  # noqa: E402

from corolla.core import Event  # noqa: E402
from corolla.privacy._secagg_encoding import levels_for  # noqa: E402
from corolla.privacy._secagg_graph import (  # noqa: E402
    default_neighbours,
    reconstruction_threshold,
)
from corolla.project import ComponentRef  # noqa: E402
from corolla.simulation import run_simulation  # noqa: E402

NODES = 100
PARAMS = 100_000
ROUNDS = 3
STEP = 0.01
CLIPPING = 0.05
SEED = 7
MAX_WEIGHT = 8
#: The DP clipping norm: below the updates' norm (0.01 x sqrt(params)), so every update is clipped.
DP_CLIPPING = 1.0
FLOWER_TIMEOUT_S = 1800
MECHANISMS = ("plain", "secagg", "dp", "secagg-dp")


class Clock(RoundClock):
    """Round times, and the server's unmasking time of each SecAgg+ round."""

    def __init__(self) -> None:
        super().__init__()
        self.server_s: list[float] = []

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        if event.kind == "secagg.unmasked":
            self.server_s.append(float(event.data["seconds"]))


def run_corolla(mechanism: str, nodes: int, params: int, rounds: int) -> dict[str, Any]:
    """One run of ``mechanism`` in Corolla's simulation; its figures and final model."""
    config = {
        "params": params,
        "rounds": rounds,
        "step": STEP,
        "seed": SEED,
        "mechanism": mechanism,
        "clipping": CLIPPING if mechanism == "secagg" else DP_CLIPPING,
    }
    client = "secagg_client" if mechanism.startswith("secagg") else "client"
    clock = Clock()
    result = run_simulation(
        ComponentRef("_privacy_apps:server", str(HERE)),
        ComponentRef(f"_privacy_apps:{client}", str(HERE)),
        nodes,
        run_config=config,
        events=clock,
    )
    if result.arrays is None:
        raise SystemExit(f"the {mechanism} run left no final arrays")
    round_s = clock.round_seconds()
    return {
        "round_s_median": statistics.median(round_s),
        "round_s": round_s,
        "server_s": clock.server_s,
        "final": np.asarray(result.arrays[_privacy_apps.ARRAY_NAME]),
    }


def _pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One mechanism's runs as one: the median of the runs' medians, every round's time
    and unmasking time, and the first run's final model."""
    return {
        "round_s_median": statistics.median(run["round_s_median"] for run in runs),
        "round_s": [s for run in runs for s in run["round_s"]],
        "server_s": [s for run in runs for s in run["server_s"]],
        "final": runs[0]["final"],
    }


def secagg_error_bound(nodes: int) -> float:
    """The worst-case error of SecAgg+'s average, per element, for the workload's weights
    (``docs/privacy.md``): ``n * W * step / (2 * sum(w))`` with ``step = c / L``."""
    weights = [i % 7 + 1 for i in range(nodes)]
    step = CLIPPING / levels_for(nodes)
    return nodes * MAX_WEIGHT * step / (2 * sum(weights))


def run_flower(nodes: int, params: int, rounds: int) -> dict[str, Any]:
    """Flower's SecAgg+ on the workload, in this process."""
    import logging

    import _flower_secagg_apps as apps
    from flwr.simulation import run_simulation as flower_simulation

    degree = min(default_neighbours(nodes), nodes - 1)
    os.environ[apps.CONFIG_VARIABLE] = json.dumps(
        {
            "nodes": nodes,
            "params": params,
            "rounds": rounds,
            "step": STEP,
            "seed": SEED,
            "clipping": CLIPPING,
            # Flower counts the node itself among the holders of its shares.
            "num_shares": degree + 1,
            "threshold": reconstruction_threshold(degree, 0.5),
        }
    )
    logging.getLogger("flwr").setLevel(logging.WARNING)
    flower_simulation(
        server_app=apps.server,
        client_app=apps.client,
        num_supernodes=nodes,
        backend_config=ray_backend_config(),  # type: ignore[arg-type]
    )
    ends = apps.RECORD["round_end"]
    round_s = [ends[r] - apps.RECORD["round_start"][r] for r in sorted(ends)]
    return {
        "rounds_completed": len(round_s),
        "round_s_median": statistics.median(round_s) if round_s else None,
        "round_s": round_s,
    }


def _flower_in_subprocess(nodes: int, params: int, rounds: int) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--flower-only",
        *("--nodes", str(nodes), "--params", str(params), "--rounds", str(rounds)),
    ]
    env = dict(os.environ, RAY_DISABLE_USAGE_STATS="1")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=FLOWER_TIMEOUT_S, env=env, check=False
    )
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=NODES)
    parser.add_argument("--params", type=int, default=PARAMS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each Corolla mechanism, in turns"
    )
    parser.add_argument("--no-flower", action="store_true", help="skip Flower's SecAgg+")
    parser.add_argument(
        "--scaling", type=int, nargs="*", default=[], metavar="NODES", help="SecAgg+ by nodes"
    )
    parser.add_argument("--flower-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flower_only:
        print(json.dumps(run_flower(args.nodes, args.params, args.rounds)))
        return 0

    load_before = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    # The mechanisms take turns, so that a change in the machine's speed during the
    # benchmark weighs on each alike.
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MECHANISMS}
    for _ in range(args.repeats):
        for mechanism in MECHANISMS:
            runs[mechanism].append(run_corolla(mechanism, args.nodes, args.params, args.rounds))
    plain, secagg, dp, secagg_dp = (_pooled(runs[m]) for m in MECHANISMS)
    error = max(
        float(np.max(np.abs(run["final"].astype(np.float64) - plain["final"])))
        for run in runs["secagg"]
    )
    # The bound holds per round, plus the rounding of each round's float32 model (half a
    # unit in the last place, on either side); the rounds' errors add up at most.
    rounding = float(np.spacing(np.float32(np.max(np.abs(plain["final"])))))
    bound = (secagg_error_bound(args.nodes) + rounding) * args.rounds
    out: dict[str, Any] = {
        "nodes": args.nodes,
        "params": args.params,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "backend": "process",
        "plain_round_s": plain["round_s_median"],
        "secagg_round_s": secagg["round_s_median"],
        "dp_round_s": dp["round_s_median"],
        "secagg_dp_round_s": secagg_dp["round_s_median"],
        "secagg_over_plain": _ratio(secagg["round_s_median"], plain["round_s_median"]),
        "dp_over_plain": _ratio(dp["round_s_median"], plain["round_s_median"]),
        "secagg_dp_over_plain": _ratio(secagg_dp["round_s_median"], plain["round_s_median"]),
        "secagg_server_s": statistics.median(secagg["server_s"]) if secagg["server_s"] else None,
        "secagg_neighbours": min(default_neighbours(args.nodes), args.nodes - 1),
        "secagg_max_abs_error": error,
        "secagg_error_bound": bound,
        "rounds_s": {
            "plain": plain["round_s"],
            "secagg": secagg["round_s"],
            "dp": dp["round_s"],
            "secagg_dp": secagg_dp["round_s"],
        },
    }
    if args.no_flower:
        out["flower_secagg"] = "skipped (--no-flower)"
    elif (missing := flower_missing()) is not None:
        out["flower_secagg"] = f"skipped: {missing}"
    else:
        flower = _flower_in_subprocess(args.nodes, args.params, args.rounds)
        out["flower_secagg_round_s"] = flower.get("round_s_median")
        out["flower_secagg_over_secagg"] = _ratio(
            flower.get("round_s_median"), secagg["round_s_median"]
        )
        out["flower_secagg"] = flower
    if args.scaling:
        scaling = []
        for nodes in args.scaling:
            base = run_corolla("plain", nodes, args.params, 1)
            run = run_corolla("secagg", nodes, args.params, 1)
            scaling.append(
                {
                    "nodes": nodes,
                    "neighbours": min(default_neighbours(nodes), nodes - 1),
                    "plain_round_s": base["round_s_median"],
                    "secagg_round_s": run["round_s_median"],
                    "server_s": run["server_s"][0] if run["server_s"] else None,
                }
            )
        out["secagg_scaling"] = scaling
    targets = {
        "secagg_round_s": (out["secagg_over_plain"] or math.inf) <= 3.0,
        "dp_round_s": (out["dp_over_plain"] or math.inf) <= 1.10,
        "secagg_within_bound": error <= bound,
    }
    out["target_met"] = targets
    out["all_targets_met"] = all(targets.values())
    out["total_s"] = time.perf_counter() - started
    out["cpus"] = os.cpu_count()
    out["loadavg_1m_before"] = load_before
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
