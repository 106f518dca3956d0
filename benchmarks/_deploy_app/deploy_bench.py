"""The app ``benchmarks/deploy.py`` submits to a link: FedAvg over a constant-step "training".

Everything comes from the run config: ``params`` float32 parameters (one flat array),
``rounds`` rounds of FedAvg, ``nodes`` nodes that must all be connected and all take
part in every round, ``step`` (what training adds to every parameter; a power of two) and
``seed`` (of the initial model). Every node has weight 1, so the final model is exactly
``initial + rounds * step``.

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
    step = np.float32(context.run_config["step"])
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
