"""The app ``benchmarks/deploy.py`` submits to a link: FedAvg over a constant-step "training".

Everything comes from the run config: ``params`` float32 parameters (one flat array),
``rounds`` rounds of FedAvg, ``nodes`` nodes that must all be connected and all take
part in every round, ``step`` (what training adds to every parameter; a power of two) and
``seed`` (of the initial model). Every node has weight 1, so the final model is exactly
``initial + rounds * step``.

Each node's update is its own, as real updates are: node ``partition-id`` (its node
config) adds ``(partition-id - (nodes - 1) / 2) / 16`` on top of ``step``. The offsets sum
to zero over the nodes, and every value stays a multiple of 1/64, so the average is still
exact; but no two nodes send the same array, and the link stores and hashes every one
(identical updates would share one content address).

The ClientApp also reports ``delivery-s``: seconds from the message's creation in the
ServerApp (``Metadata.created_at``) to the ClientApp's call, on the same machine's clock.
"""

from __future__ import annotations

import time

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.server import Grid, ServerApp
from corolla.strategy import FedAvg

__all__ = ["ARRAY_NAME", "client", "initial_model", "server"]

ARRAY_NAME = "w"


def initial_model(params: int, seed: int) -> np.ndarray:
    """The initial float32 model: multiples of 1/64 in [-16, 16), so ``+ step`` is exact."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-1024, 1024, size=params) / 64.0).astype(np.float32)


client = ClientApp()


@client.train()
def train(message: Message, context: Context) -> Message:
    delivery_s = time.time() - message.metadata.created_at
    nodes = int(context.run_config["nodes"])
    offset = (
        float(context.node_config.get("partition-id", (nodes - 1) / 2)) - (nodes - 1) / 2
    ) / 16
    step = np.float32(float(context.run_config["step"]) + offset)
    arrays = message.content["arrays"]
    updated = ArrayRecord({name: a + step for name, a in arrays.items()})
    metrics = MetricRecord({"num-examples": 1, "delivery-s": delivery_s})
    return Message(RecordDict({"arrays": updated, "metrics": metrics}), reply_to=message)


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    nodes = int(config["nodes"])
    initial = ArrayRecord({ARRAY_NAME: initial_model(int(config["params"]), int(config["seed"]))})
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=nodes,
        min_available_nodes=nodes,
        min_train_replies=nodes,
        seed=int(config["seed"]),
    )
    strategy.start(grid, initial, num_rounds=int(config["rounds"]))
