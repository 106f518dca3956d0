"""What each node does: DP-SGD on its own partition, keeping the account of what its data
spent across rounds, or evaluating the global model there."""

from __future__ import annotations

import torch

from corolla.client import ClientApp
from corolla.core import ConfigRecord, Context, Message, MetricRecord, RecordDict
from corolla.frameworks import arrays_from_torch, load_torch_arrays

from .task import Net, evaluate, load_partition, node_epsilon, torch_seed, train_private

app = ClientApp()

#: The node's state record holding its privacy accountant's history.
ACCOUNT = "dp-sgd"


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
    torch.set_num_threads(1)
    net = Net()
    load_torch_arrays(net, message.content["arrays"])
    return net


@app.train()
def train_handler(message: Message, context: Context) -> Message:
    net = _global_model(message)
    x, y, _, _ = _local_data(context)
    config = message.content["config"]
    run = context.run_config
    generator = torch.Generator().manual_seed(
        torch_seed(
            int(run.get("seed", 0)),
            int(context.node_config["partition-id"]),
            int(config["server-round"]),
        )
    )
    account = context.state.get(ACCOUNT)
    history = str(account["history"]) if isinstance(account, ConfigRecord) else "[]"
    loss, history = train_private(
        net,
        x,
        y,
        epochs=int(config["local-epochs"]),
        batch_size=int(config["batch-size"]),
        learning_rate=float(config["learning-rate"]),
        noise_multiplier=float(run["noise-multiplier"]),
        max_grad_norm=float(run["max-grad-norm"]),
        history=history,
        generator=generator,
    )
    context.state = context.state | {ACCOUNT: ConfigRecord({"history": history})}
    epsilon = node_epsilon(history, float(run["delta"]))
    metrics = {"num-examples": len(y), "train-loss": loss, "dp-sgd-epsilon": epsilon}
    content = RecordDict({"arrays": arrays_from_torch(net), "metrics": MetricRecord(metrics)})
    return Message(content, reply_to=message)


@app.evaluate()
def evaluate_handler(message: Message, context: Context) -> Message:
    net = _global_model(message)
    _, _, x, y = _local_data(context)
    loss, accuracy = evaluate(net, x, y)
    metrics = MetricRecord({"num-examples": len(y), "loss": loss, "accuracy": accuracy})
    return Message(RecordDict({"metrics": metrics}), reply_to=message)
