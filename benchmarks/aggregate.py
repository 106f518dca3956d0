"""Throughput of FedAvg's aggregation kernel, next to memory bandwidth measured in the same run.

Folds N float32 updates (as replies with ``num-examples`` weights) into a ``WeightedAverage``
and reports the update bytes folded per second, next to ``numpy.copyto`` of the same
updates into a preallocated array (the memory-bandwidth yardstick) and, when ``flwr`` is
importable, Flower's own ``aggregate`` over the same updates::

    python benchmarks/aggregate.py               # both cases
    python benchmarks/aggregate.py --case small  # 100 updates x 1M float32
    python benchmarks/aggregate.py --case large  # 10 updates x 25M float32

Prints one JSON object per case with ``fold_gb_per_s`` (float64 accumulators, the default),
``native_fold_gb_per_s`` (``precision="native"``: float32 sums of float32 updates, as
Flower sums), ``memcpy_gb_per_s``, their ratios (target: >= 0.5) and each precision's
largest error relative to a float64 NumPy reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from corolla.core import ArrayRecord, MetricRecord, RecordDict
from corolla.strategy import WeightedAverage, array_spec

CASES = {"small": (100, 1_000_000), "large": (10, 25_000_000)}


def _best(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def run_case(name: str, num_updates: int, size: int, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    updates = [rng.standard_normal(size, dtype=np.float32) for _ in range(num_updates)]
    weights = [int(w) for w in rng.integers(1, 100, num_updates)]
    replies = [
        RecordDict(
            {
                "arrays": ArrayRecord({"w": u}),
                "metrics": MetricRecord({"num-examples": w}),
            }
        )
        for u, w in zip(updates, weights)
    ]
    spec = array_spec(replies[0]["arrays"])  # type: ignore[arg-type]
    result: dict[str, Any] = {}

    def fold(precision: str) -> None:
        aggregator = WeightedAverage(spec=spec, precision=precision)
        for i, reply in enumerate(replies):
            aggregator.add(reply, i + 1)
        result[precision] = aggregator.arrays()

    target = np.empty(size, dtype=np.float32)

    def copy() -> None:
        for u in updates:
            np.copyto(target, u)

    total_bytes = num_updates * size * 4
    fold_s = _best(lambda: fold("float64"), repeats)
    native_s = _best(lambda: fold("native"), repeats)
    copy_s = _best(copy, repeats)
    expected = np.average(np.stack(updates).astype(np.float64), axis=0, weights=weights)
    out: dict[str, Any] = {
        "case": name,
        "updates": num_updates,
        "parameters": size,
        "update_mb": size * 4 / 1e6,
        "fold_s": fold_s,
        "fold_gb_per_s": total_bytes / fold_s / 1e9,
        "native_fold_s": native_s,
        "native_fold_gb_per_s": total_bytes / native_s / 1e9,
        "memcpy_gb_per_s": total_bytes / copy_s / 1e9,
    }
    for precision, key in [("float64", "max_rel_error"), ("native", "native_max_rel_error")]:
        error = np.abs(result[precision]["w"] - expected) / np.maximum(np.abs(expected), 1e-3)
        out[key] = float(error.max())
    out["fold_over_memcpy"] = out["fold_gb_per_s"] / out["memcpy_gb_per_s"]
    out["native_fold_over_memcpy"] = out["native_fold_gb_per_s"] / out["memcpy_gb_per_s"]
    out["target_met"] = out["fold_over_memcpy"] >= 0.5
    out["native_target_met"] = out["native_fold_over_memcpy"] >= 0.5
    try:
        from flwr.server.strategy.aggregate import aggregate
    except ImportError:
        out["flower"] = "flwr not installed"
    else:
        flower_input = [([u], w) for u, w in zip(updates, weights)]
        flower_s = _best(lambda: aggregate(flower_input), repeats)
        out["flower_gb_per_s"] = total_bytes / flower_s / 1e9
        out["fold_over_flower"] = out["fold_gb_per_s"] / out["flower_gb_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    names = list(CASES) if args.case == "all" else [args.case]
    for name in names:
        print(json.dumps(run_case(name, *CASES[name], args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
