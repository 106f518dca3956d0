"""What each node does: train the global model on its own partition, or evaluate it there."""

from __future__ import annotations

import torch

from corolla.client import ClientApp
from corolla.core import Context, Message, MetricRecord, RecordDict
from corolla.frameworks import arrays_from_torch, load_torch_arrays

from .task import Net, evaluate, load_partition, torch_seed, train

app = ClientApp()


def _local_data(
    context: Context,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return load_partition(
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
        float(context.run_config["dirichlet-alpha"]),
        int(context.run_config.get("seed", 0)),
    )


def _global_model(message: Message) -> Net:
    # Each simulation worker is one core; more threads would only contend (and could
    # change the bits of a result from one machine to another).
    torch.set_num_threads(1)
    net = Net()
    load_torch_arrays(net, message.content["arrays"])
    return net


@app.train()
def train_handler(message: Message, context: Context) -> Message:
    net = _global_model(message)
    x, y, _, _ = _local_data(context)
    config = message.content["config"]
    # Seeded by run, node and round: the same run gives the same bits on any backend.
    generator = torch.Generator().manual_seed(
        torch_seed(
            int(context.run_config.get("seed", 0)),
            int(context.node_config["partition-id"]),
            int(config["server-round"]),
        )
    )
    loss = train(
        net,
        x,
        y,
        epochs=int(config["local-epochs"]),
        batch_size=int(config["batch-size"]),
        learning_rate=float(config["learning-rate"]),
        generator=generator,
    )
    # The reply views the trained model's tensors (no copy): net is not used again.
    content = RecordDict(
        {
            "arrays": arrays_from_torch(net),
            "metrics": MetricRecord({"num-examples": len(y), "train-loss": loss}),
        }
    )
    return Message(content, reply_to=message)


@app.evaluate()
def evaluate_handler(message: Message, context: Context) -> Message:
    net = _global_model(message)
    _, _, x, y = _local_data(context)
    loss, accuracy = evaluate(net, x, y)
    metrics = MetricRecord({"num-examples": len(y), "loss": loss, "accuracy": accuracy})
    return Message(RecordDict({"metrics": metrics}), reply_to=message)
