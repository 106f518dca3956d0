"""What each node does: train on its own partition, or evaluate the global model on it."""

from __future__ import annotations

import numpy as np

from corolla.client import ClientApp
from corolla.core import Context, Message, MetricRecord, RecordDict

from .task import load_partition, loss_and_accuracy, train

app = ClientApp()


def _local_data(context: Context) -> tuple[np.ndarray, np.ndarray]:
    return load_partition(
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
        float(context.run_config["dirichlet-alpha"]),
        int(context.run_config.get("seed", 0)),
    )


@app.train()
def train_handler(message: Message, context: Context) -> Message:
    x, y = _local_data(context)
    server_round = int(message.content["config"]["server-round"])
    seed = int(context.run_config.get("seed", 0))
    # Seeded by run, node and round: the same run gives the same bits on any backend.
    rng = np.random.default_rng([seed, int(context.node_config["partition-id"]), server_round])
    arrays, loss = train(
        message.content["arrays"],
        x,
        y,
        epochs=int(context.run_config["local-epochs"]),
        batch_size=int(context.run_config["batch-size"]),
        learning_rate=float(context.run_config["learning-rate"]),
        rng=rng,
    )
    metrics = MetricRecord({"num-examples": len(y), "train-loss": loss})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


@app.evaluate()
def evaluate_handler(message: Message, context: Context) -> Message:
    x, y = _local_data(context)
    loss, accuracy = loss_and_accuracy(message.content["arrays"], x, y)
    metrics = MetricRecord({"num-examples": len(y), "loss": loss, "accuracy": accuracy})
    return Message(RecordDict({"metrics": metrics}), reply_to=message)
