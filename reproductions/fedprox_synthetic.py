"""FedProx on Synthetic(1, 1) with stragglers (Li et al., MLSys 2020, Figure 1).

Protocol: 30 devices of Synthetic(1, 1) (``corolla.data.synthetic_federated``), multinomial
logistic regression, SGD with learning rate 0.01 and batch 10, 20 local epochs, 10 devices
per round, 200 rounds. FedAvg drops the stragglers; FedProx with mu = 0 and mu = 1 keeps
them, each doing a random 1-20 epochs; 0%, 50% and 90% stragglers. Plots the training loss
(over all devices' training data) and the test accuracy per round.

    python reproductions/fedprox_synthetic.py --output results/synthetic
    python reproductions/fedprox_synthetic.py --output /tmp/s --quick   # the tests' short form

Writes ``DIR/results.json`` (setting -> final training loss and test accuracy, and the
curves), ``DIR/results.md`` and ``DIR/results.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _synthetic_app as app  # noqa: E402

from corolla.simulation import run_simulation  # noqa: E402

METHODS = {"FedAvg": (0.0, True), "FedProx mu=0": (0.0, False), "FedProx mu=1": (1.0, False)}
STRAGGLERS = (0.0, 0.5, 0.9)


def run_one(method: str, stragglers: float, args: argparse.Namespace) -> dict[str, list[float]]:
    mu, drop = METHODS[method]
    result = run_simulation(
        app.server,
        app.client,
        30,
        backend=args.backend,
        run_config={
            "seed": args.seed,
            "mu": mu,
            "drop-stragglers": drop,
            "stragglers": stragglers,
            "rounds": args.rounds,
            "local-epochs": args.epochs,
            "learning-rate": 0.01,
            "batch-size": 10,
        },
    )
    assert result.history is not None
    return {
        "train-loss": [v for _, v in result.history.series("server", "train-loss")],
        "test-accuracy": [v for _, v in result.history.series("server", "test-accuracy")],
    }


def plot(curves: dict[str, dict[str, dict[str, list[float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(STRAGGLERS), figsize=(4.2 * len(STRAGGLERS), 6.5))
    for col, level in enumerate(STRAGGLERS):
        for method in METHODS:
            series = curves[f"{level:.0%}"][method]
            axes[0, col].plot(series["train-loss"], label=method)
            axes[1, col].plot(series["test-accuracy"], label=method)
        axes[0, col].set_title(f"{level:.0%} stragglers")
        axes[0, col].set_ylabel("training loss")
        axes[1, col].set_ylabel("test accuracy")
        axes[1, col].set_xlabel("round")
        axes[0, col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["inline", "process"], default="process")
    parser.add_argument("--quick", action="store_true", help="10 rounds of 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs = 10, 2
    curves: dict[str, dict[str, dict[str, list[float]]]] = {}
    for level in STRAGGLERS:
        for method in METHODS:
            curves.setdefault(f"{level:.0%}", {})[method] = run_one(method, level, args)
    final = {
        f"{method}, {level} stragglers": {
            "train-loss": series["train-loss"][-1],
            "test-accuracy": series["test-accuracy"][-1],
        }
        for level, by_method in curves.items()
        for method, series in by_method.items()
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(
        json.dumps({"final": final, "curves": curves}, indent=1) + "\n"
    )
    lines = [
        f"Synthetic(1, 1), {args.rounds} rounds x {args.epochs} epochs, seed {args.seed}",
        "",
        "| setting | final training loss | final test accuracy |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {k} | {v['train-loss']:.3f} | {v['test-accuracy']:.3f} |" for k, v in final.items()
    ]
    (args.output / "results.md").write_text("\n".join(lines) + "\n")
    plot(curves, args.output / "results.png")
    print(json.dumps(final))
    return 0


if __name__ == "__main__":
    sys.exit(main())
