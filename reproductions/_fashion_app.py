"""Fashion-MNIST apps: McMahan et al.'s small CNN, one node per client of 600 images.

Partitions: ``iid`` (shuffled, equal shares) or ``shards`` (sorted by label, 200 shards of
300 images, 2 per client: the pathological non-IID split of McMahan et al., 2017).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.data import Dataset, iid_partition, load_fashion_mnist, shard_partition
from corolla.frameworks import arrays_from_torch, load_torch_arrays
from corolla.server import Grid, ServerApp
from corolla.strategy import FedAvg


@functools.lru_cache(maxsize=1)
def dataset() -> Dataset:
    return load_fashion_mnist()


@functools.lru_cache(maxsize=4)
def partitions(scheme: str, num_clients: int, seed: int) -> list[np.ndarray]:
    labels = dataset().y_train
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        return iid_partition(len(labels), num_clients, rng)
    return shard_partition(labels, num_clients, 2, rng)


def make_model(seed: int) -> Any:
    """McMahan et al.'s CNN, narrowed for CPUs: two 5x5 convolutions (16, 32 channels) with
    2x2 max pooling, a 256-unit dense layer and a softmax output."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def evaluate(arrays: ArrayRecord, limit: int) -> tuple[float, float]:
    import torch

    model = make_model(0)
    load_torch_arrays(model, arrays)
    data = dataset()
    x = torch.from_numpy(data.x_test[:limit].reshape(-1, 1, 28, 28))
    y = torch.from_numpy(data.y_test[:limit])
    with torch.no_grad():
        logits = model(x)
        loss = float(torch.nn.functional.cross_entropy(logits, y))
        accuracy = float((logits.argmax(1) == y).float().mean())
    return loss, accuracy


client = ClientApp()


@client.train()
def train(message: Message, context: Context) -> Message:
    import torch

    torch.set_num_threads(1)
    config = context.run_config
    seed = int(config["seed"])
    client_id = int(context.node_config["partition-id"])
    server_round = int(message.content["config"]["server-round"])
    index = partitions(str(config["partition"]), int(context.node_config["num-partitions"]), seed)[
        client_id
    ]
    data = dataset()
    x = torch.from_numpy(data.x_train[index].reshape(-1, 1, 28, 28))
    y = torch.from_numpy(data.y_train[index])
    model = make_model(seed)
    load_torch_arrays(model, message.content["arrays"])  # type: ignore[arg-type]
    optimizer = torch.optim.SGD(model.parameters(), lr=float(config["learning-rate"]))
    generator = torch.Generator().manual_seed(seed * 1_000_003 + client_id * 1009 + server_round)
    batch_size = int(config["batch-size"])
    for _ in range(int(config["local-epochs"])):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    metrics = MetricRecord({"num-examples": len(y), "train-loss": float(loss.detach())})
    arrays = arrays_from_torch(model, copy=True)
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    seed = int(config["seed"])
    limit = int(config["test-images"])

    def server_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        loss, accuracy = evaluate(arrays, limit)
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    FedAvg(
        fraction_train=float(config["fraction"]),
        fraction_evaluate=0.0,
        min_train_nodes=1,
        min_available_nodes=1,
        seed=seed,
    ).start(
        grid,
        arrays_from_torch(make_model(seed), copy=True),
        num_rounds=int(config["rounds"]),
        evaluate_fn=server_evaluate,
    )
