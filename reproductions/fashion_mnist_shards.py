"""Fashion-MNIST with pathological non-IID shards (McMahan et al., 2017), against IID.

Protocol: the 60,000 Fashion-MNIST training images (Debian's ``dataset-fashion-mnist``,
installed by this script when missing) over 100 clients — IID, or sorted by label and cut
into 200 shards of 300 images, 2 per client; a small CNN; FedAvg with C = 0.1 (10 clients a
round), E = 1 local epoch, B = 10, SGD learning rate 0.05. Reports, for each partition, the
test accuracy per round and the number of rounds to reach the target accuracy.

    python reproductions/fashion_mnist_shards.py --output results/fashion
    python reproductions/fashion_mnist_shards.py --output /tmp/f --quick   # the tests' form

Writes ``DIR/results.json``, ``DIR/results.md`` and ``DIR/results.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corolla.data import FASHION_MNIST_DIR  # noqa: E402
from corolla.simulation import run_simulation  # noqa: E402

PARTITIONS = ("iid", "shards")


def ensure_dataset() -> None:
    """Install Debian's dataset-fashion-mnist when its files are missing (needs root)."""
    if (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]
    if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)


def run_one(partition: str, args: argparse.Namespace) -> list[float]:
    import _fashion_app as app

    result = run_simulation(
        app.server,
        app.client,
        args.clients,
        backend=args.backend,
        run_config={
            "seed": args.seed,
            "partition": partition,
            "rounds": args.rounds,
            "fraction": args.fraction,
            "local-epochs": 1,
            "batch-size": 10,
            "learning-rate": 0.05,
            "test-images": args.test_images,
        },
    )
    assert result.history is not None
    return [v for _, v in result.history.series("server", "accuracy")]


def rounds_to(curve: list[float], target: float) -> int | None:
    return next((r for r, accuracy in enumerate(curve) if accuracy >= target), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--target", type=float, default=0.80)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["inline", "process"], default="process")
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds, 1,000 test images, inline backend"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.test_images, args.backend = 3, 1000, "inline"
    ensure_dataset()
    curves = {partition: run_one(partition, args) for partition in PARTITIONS}
    summary = {
        partition: {
            "final_accuracy": curve[-1],
            "best_accuracy": max(curve),
            f"rounds_to_{args.target}": rounds_to(curve, args.target),
        }
        for partition, curve in curves.items()
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(
        json.dumps({"summary": summary, "curves": curves, "target": args.target}, indent=1) + "\n"
    )
    lines = [
        f"Fashion-MNIST, {args.clients} clients, C={args.fraction}, E=1, B=10, "
        f"{args.rounds} rounds, seed {args.seed}",
        "",
        f"| partition | final accuracy | best accuracy | rounds to {args.target} |",
        "| --- | --- | --- | --- |",
    ]
    for partition, row in summary.items():
        reached = row[f"rounds_to_{args.target}"]
        lines.append(
            f"| {partition} | {row['final_accuracy']:.3f} | {row['best_accuracy']:.3f} | "
            f"{reached if reached is not None else 'not reached'} |"
        )
    (args.output / "results.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for partition, curve in curves.items():
        ax.plot(curve, label=partition)
    ax.axhline(args.target, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output / "results.png", dpi=110)
    plt.close(fig)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
