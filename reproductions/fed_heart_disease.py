"""Fed-Heart-Disease (FLamby): four hospitals, logistic regression, six federated methods
against pooled and local training.

Protocol (du Terrail et al., NeurIPS 2022 Datasets and Benchmarks): the UCI Heart Disease
files of four hospitals with FLamby's preprocessing (``corolla.data.load_fed_heart_disease``);
logistic regression; client SGD with batch 4, 100 local steps per round, 15 rounds, each
node's batches carrying on across rounds; client learning rate 0.001 for FedAvg, FedProx
(mu 0.01) and SCAFFOLD (server rate 1); FedAdam client 0.01 / server 0.01, FedYogi client
0.003162 / server 0.01, FedAdagrad client 0.003162 / server 0.316228 (FedOpt beta_1 0.9,
beta_2 0.999, tau 1e-8) with FLamby's server conventions: FedAdam without bias correction,
FedAdagrad with a first moment, SCAFFOLD weighted by training-set size. Pooled and
single-site baselines as FLamby's ``train_single_centric``: Adam (lr 0.001, batch 4) for 50
epochs; the pooled data are standardised with the statistics of all sites' training rows
(FLamby's ``pooled=True``), the test sets always with their own site's. Metric: the mean
over sites of each site's test accuracy (every model, single-site ones included, is tested
on all four sites), over FLamby's five seeds 42-46 (mean +- std); a seed fixes the initial
model exactly as ``torch.manual_seed(seed)`` does in FLamby, and the data order with NumPy.

    python reproductions/fed_heart_disease.py --output results/heart
    python reproductions/fed_heart_disease.py --output /tmp/h --quick   # the CI's short form

Writes ``DIR/results.json`` (method -> [mean, std]), ``DIR/results.md`` and ``DIR/results.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _heart_app as app  # noqa: E402

from corolla.data import HEART_SITES  # noqa: E402
from corolla.simulation import run_simulation  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "fed-heart-disease"
FEDERATED = list(app.METHODS)
FIRST_SEED = 42  # FLamby's results are for seeds 42-46


def federated(method: str, seed: int, rounds: int, steps: int, data: str) -> float:
    result = run_simulation(
        app.server,
        app.client,
        4,
        backend="inline",
        run_config={
            "seed": seed,
            "strategy": method,
            "rounds": rounds,
            "local-steps": steps,
            "batch-size": 4,
            "client-lr": app.METHODS[method][0],
            "data": data,
        },
    )
    assert result.arrays is not None
    return app.mean_site_accuracy(result.arrays, data)


def local(site: int, seed: int, epochs: int, data: str) -> float:
    """FLamby's "Local i": Adam (lr 0.001, batch 4) on one site's training data alone."""
    dataset = app.sites(data)[site]
    arrays = app.adam(
        app.initial_arrays(seed),
        dataset.x_train,
        dataset.y_train.astype(np.float64),
        epochs=epochs,
        batch_size=4,
        lr=0.001,
        rng=np.random.default_rng([seed, site]),
    )
    return app.mean_site_accuracy(arrays, data)


def pooled(seed: int, epochs: int, data: str) -> float:
    """Adam (lr 0.001, batch 4) on all sites' training data pooled and standardised together,
    tested on each site's test set standardised with that site's statistics (FLamby's code)."""
    together = app.sites(data, "pooled")
    arrays = app.adam(
        app.initial_arrays(seed),
        np.concatenate([s.x_train for s in together]).astype(np.float64),
        np.concatenate([s.y_train for s in together]).astype(np.float64),
        epochs=epochs,
        batch_size=4,
        lr=0.001,
        rng=np.random.default_rng(seed),
    )
    return app.mean_site_accuracy(arrays, data)


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    data = str(args.data)
    scores: dict[str, list[float]] = {}
    for seed in range(FIRST_SEED, FIRST_SEED + args.seeds):
        for method in FEDERATED:
            scores.setdefault(method, []).append(
                federated(method, seed, args.rounds, args.steps, data)
            )
        scores.setdefault("Initial model", []).append(
            app.mean_site_accuracy(app.initial_arrays(seed), data)
        )
        scores.setdefault("Pooled", []).append(pooled(seed, args.epochs, data))
        for site, name in enumerate(HEART_SITES):
            scores.setdefault(f"Local {name}", []).append(local(site, seed, args.epochs, data))
    return scores


def write(output: Path, scores: dict[str, list[float]], args: argparse.Namespace) -> None:
    output.mkdir(parents=True, exist_ok=True)
    summary = {m: [float(np.mean(v)), float(np.std(v))] for m, v in scores.items()}
    (output / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"Fed-Heart-Disease, {args.seeds} seeds, {args.rounds} rounds x {args.steps} steps",
        "",
        "| method | mean site accuracy |",
        "| --- | --- |",
    ]
    lines += [f"| {m} | {mean:.3f} +- {std:.3f} |" for m, (mean, std) in summary.items()]
    (output / "results.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = list(summary)
    ax.bar(names, [summary[n][0] for n in names], yerr=[summary[n][1] for n in names])
    ax.set_ylabel("mean site test accuracy")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(output / "results.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="1 seed, 5 rounds, 10 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.epochs = 1, 5, 10
    scores = run(args)
    write(args.output, scores, args)
    print(json.dumps({m: [float(np.mean(v)), float(np.std(v))] for m, v in scores.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
