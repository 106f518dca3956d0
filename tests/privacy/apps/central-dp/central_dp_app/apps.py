"""Nodes move the arrays by an amount of their own, clipped on the node; the server runs
FedAvg under CentralDP."""

from __future__ import annotations

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.privacy import CentralDP, clipping_mod
from corolla.server import Grid, ServerApp
from corolla.strategy import FedAvg

client_app = ClientApp(mods=[clipping_mod])


@client_app.train()
def train(message: Message, context: Context) -> Message:
    step = 0.5 * (1 + int(context.node_config.get("partition-id", 0)))
    arrays = ArrayRecord((n, a + step) for n, a in message.content["arrays"].items())
    metrics = MetricRecord({"num-examples": 1})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    strategy = CentralDP(
        FedAvg(fraction_evaluate=0.0, seed=int(config.get("seed", 0))),
        noise_multiplier=float(config["noise-multiplier"]),
        clipping_norm=float(config["clipping-norm"]),
        clipping="client",
        delta=float(config["delta"]),
    )
    initial = ArrayRecord({"w": np.zeros(4)})
    strategy.start(grid, initial, num_rounds=int(config["num-server-rounds"]))


server_app = ServerApp(main)
