"""What each node does: train the global model on its own partition, or evaluate it there."""

from __future__ import annotations

import numpy as np

from corolla.client import ClientApp
from corolla.core import Context, Message, MetricRecord, RecordDict
from corolla.frameworks import arrays_from_sklearn, set_sklearn_arrays

from .task import evaluate, load_partition, new_model, train

app = ClientApp()


def _local_data(context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return load_partition(
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
        float(context.run_config["dirichlet-alpha"]),
        int(context.run_config.get("seed", 0)),
    )


@app.train()
def train_handler(message: Message, context: Context) -> Message:
    config = message.content["config"]
    model = new_model(
        learning_rate=float(config["learning-rate"]), l2_penalty=float(config["l2-penalty"])
    )
    set_sklearn_arrays(model, message.content["arrays"])
    x, y, _, _ = _local_data(context)
    # Seeded by run, node and round: the same run gives the same bits on any backend.
    rng = np.random.default_rng(
        [
            int(context.run_config.get("seed", 0)),
            int(context.node_config["partition-id"]),
            int(config["server-round"]),
        ]
    )
    loss = train(model, x, y, epochs=int(config["local-epochs"]), rng=rng)
    # The reply views the model's coefficients (no copy): the model is not used again.
    content = RecordDict(
        {
            "arrays": arrays_from_sklearn(model),
            "metrics": MetricRecord({"num-examples": len(y), "train-loss": loss}),
        }
    )
    return Message(content, reply_to=message)


@app.evaluate()
def evaluate_handler(message: Message, context: Context) -> Message:
    model = new_model()
    set_sklearn_arrays(model, message.content["arrays"])
    _, _, x, y = _local_data(context)
    loss, accuracy = evaluate(model, x, y)
    metrics = MetricRecord({"num-examples": len(y), "loss": loss, "accuracy": accuracy})
    return Message(RecordDict({"metrics": metrics}), reply_to=message)
