"""FedProx's Synthetic(1, 1) apps: multinomial logistic regression on 30 devices.

Each round the strategy samples 10 devices. A device is a straggler with the run's
straggler probability, decided from (seed, round, device) so every backend agrees. With
``drop-stragglers`` (FedAvg, as in the FedProx paper) a straggler's update weighs nothing;
otherwise (FedProx) it trains a random 1..E epochs and is averaged like the others.
"""

from __future__ import annotations

import functools

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.data import Dataset, synthetic_federated
from corolla.server import Grid, ServerApp
from corolla.strategy import FedProx

DIM, CLASSES = 60, 10


@functools.lru_cache(maxsize=2)
def devices(seed: int) -> list[Dataset]:
    return synthetic_federated(1.0, 1.0, num_devices=30, seed=seed)


def initial_arrays() -> ArrayRecord:
    return ArrayRecord(
        {"weight": np.zeros((DIM, CLASSES), np.float32), "bias": np.zeros(CLASSES, np.float32)}
    )


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_accuracy(arrays: ArrayRecord, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p = _softmax(x @ arrays["weight"] + arrays["bias"])
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    return loss, float((p.argmax(axis=1) == y).mean())


def pooled(seed: int, part: str) -> tuple[np.ndarray, np.ndarray]:
    data = devices(seed)
    return (
        np.concatenate([getattr(d, f"x_{part}") for d in data]),
        np.concatenate([getattr(d, f"y_{part}") for d in data]),
    )


client = ClientApp()


@client.train()
def train(message: Message, context: Context) -> Message:
    config = context.run_config
    seed = int(config["seed"])
    device_id = int(context.node_config["partition-id"])
    device = devices(seed)[device_id]
    server_round = int(message.content["config"]["server-round"])
    rng = np.random.default_rng([seed, device_id, server_round])
    epochs = int(config["local-epochs"])
    straggler = rng.random() < float(config["stragglers"])
    if straggler and bool(config["drop-stragglers"]):
        arrays: ArrayRecord = message.content["arrays"]  # type: ignore[assignment]
        metrics = MetricRecord({"num-examples": 0})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)
    if straggler:
        epochs = int(rng.integers(1, epochs + 1))
    mu = float(message.content["config"].get("proximal-mu", 0.0))  # type: ignore[arg-type]
    global_w = np.asarray(message.content["arrays"]["weight"], np.float64)  # type: ignore[index]
    global_b = np.asarray(message.content["arrays"]["bias"], np.float64)  # type: ignore[index]
    w, b = global_w.copy(), global_b.copy()
    lr, batch_size = float(config["learning-rate"]), int(config["batch-size"])
    onehot = np.eye(CLASSES)[device.y_train]
    x = device.x_train.astype(np.float64)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            error = (_softmax(x[batch] @ w + b) - onehot[batch]) / len(batch)
            w -= lr * (x[batch].T @ error + mu * (w - global_w))
            b -= lr * (error.sum(axis=0) + mu * (b - global_b))
    new = ArrayRecord({"weight": w.astype(np.float32), "bias": b.astype(np.float32)})
    metrics = MetricRecord({"num-examples": len(x)})
    return Message(RecordDict({"arrays": new, "metrics": metrics}), reply_to=message)


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    seed = int(config["seed"])
    x_train, y_train = pooled(seed, "train")
    x_test, y_test = pooled(seed, "test")

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        train_loss, _ = loss_and_accuracy(arrays, x_train, y_train)
        _, accuracy = loss_and_accuracy(arrays, x_test, y_test)
        return MetricRecord({"train-loss": train_loss, "test-accuracy": accuracy})

    FedProx(
        proximal_mu=float(config["mu"]),
        fraction_train=10 / 30,
        fraction_evaluate=0.0,
        min_train_nodes=10,
        min_available_nodes=30,
        seed=seed,
    ).start(grid, initial_arrays(), num_rounds=int(config["rounds"]), evaluate_fn=evaluate)
