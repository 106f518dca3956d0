"""The Fed-Heart-Disease apps: logistic regression, one node per hospital (FLamby's protocol).

Importable by simulation workers; ``fed_heart_disease.py`` drives it.
"""

from __future__ import annotations

import functools

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.data import Dataset, load_fed_heart_disease
from corolla.server import Grid, ServerApp
from corolla.strategy import FedAvg, Strategy

NUM_FEATURES = 13


@functools.lru_cache(maxsize=2)
def sites(directory: str) -> list[Dataset]:
    return load_fed_heart_disease(directory)


def initial_arrays(seed: int) -> ArrayRecord:
    """PyTorch's ``nn.Linear(13, 1)`` initialisation: U(-1/sqrt(13), 1/sqrt(13)), seeded."""
    rng = np.random.default_rng([seed, 1013])
    bound = 1.0 / np.sqrt(NUM_FEATURES)
    return ArrayRecord(
        {
            "weight": rng.uniform(-bound, bound, NUM_FEATURES).astype(np.float32),
            "bias": rng.uniform(-bound, bound, 1).astype(np.float32),
        }
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def accuracy(arrays: ArrayRecord, x: np.ndarray, y: np.ndarray) -> float:
    p = _sigmoid(x @ arrays["weight"] + arrays["bias"][0])
    return float(((p >= 0.5) == (y == 1)).mean())


def mean_site_accuracy(arrays: ArrayRecord, directory: str) -> float:
    """FLamby's metric: the mean over hospitals of each one's test accuracy."""
    return float(np.mean([accuracy(arrays, s.x_test, s.y_test) for s in sites(directory)]))


def sgd(
    arrays: ArrayRecord,
    x: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
) -> tuple[ArrayRecord, float]:
    """``steps`` mini-batch SGD steps on the binary cross-entropy, cycling shuffled epochs."""
    w = np.array(arrays["weight"], dtype=np.float64)
    b = float(arrays["bias"][0])
    order = rng.permutation(len(y))
    position = 0
    losses = []
    for _ in range(steps):
        if position >= len(order):
            order, position = rng.permutation(len(y)), 0
        batch = order[position : position + batch_size]
        position += batch_size
        p = _sigmoid(x[batch] @ w + b)
        losses.append(
            -np.mean(y[batch] * np.log(p + 1e-12) + (1 - y[batch]) * np.log(1 - p + 1e-12))
        )
        error = (p - y[batch]) / len(batch)
        w -= lr * (x[batch].T @ error)
        b -= lr * float(error.sum())
    new = ArrayRecord({"weight": w.astype(np.float32), "bias": np.asarray([b], dtype=np.float32)})
    return new, float(np.mean(losses))


client = ClientApp()


@client.train()
def train(message: Message, context: Context) -> Message:
    site = sites(str(context.run_config["data"]))[int(context.node_config["partition-id"])]
    server_round = int(message.content["config"]["server-round"])
    rng = np.random.default_rng(
        [int(context.run_config["seed"]), int(context.node_config["partition-id"]), server_round]
    )
    arrays, loss = sgd(
        message.content["arrays"],  # type: ignore[arg-type]
        site.x_train,
        site.y_train,
        steps=int(context.run_config["local-steps"]),
        batch_size=int(context.run_config["batch-size"]),
        lr=float(context.run_config["client-lr"]),
        rng=rng,
    )
    metrics = MetricRecord({"num-examples": len(site.y_train), "train-loss": loss})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


def make_strategy(name: str, seed: int) -> Strategy:
    """The server side of each federated method of the reproduction."""
    if name == "FedAvg":
        return FedAvg(fraction_evaluate=0.0, min_train_nodes=4, min_available_nodes=4, seed=seed)
    raise KeyError(name)


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    directory = str(config["data"])
    strategy = make_strategy(str(config["strategy"]), int(config["seed"]))
    strategy.start(
        grid,
        initial_arrays(int(config["seed"])),
        num_rounds=int(config["rounds"]),
        evaluate_fn=lambda _, arrays: MetricRecord(
            {"accuracy": mean_site_accuracy(arrays, directory)}
        ),
    )
