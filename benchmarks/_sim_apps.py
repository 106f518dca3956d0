"""The apps the simulation-overhead benchmark runs: FedAvg over a constant-step "training".

They live in an importable module so worker processes load them by reference. Everything
a run needs comes from the run config:

- ``params``: float32 parameters of the model (one flat array).
- ``rounds``: rounds of FedAvg.
- ``fraction``: fraction of the nodes sampled each round.
- ``step``: what local training adds to every parameter (a power of two, so sums are exact).
- ``seed``: seed of the initial model and of node sampling.

Node weights (``num-examples``) are small integers, so the float64 weighted sums are exact
and the final model is exactly ``initial + rounds * step``.
"""

from __future__ import annotations

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.server import Grid, ServerApp
from corolla.strategy import FedAvg

__all__ = ["client", "initial_model", "server"]

ARRAY_NAME = "w"


def initial_model(params: int, seed: int) -> np.ndarray:
    """The initial float32 model: multiples of 1/64 in [-16, 16), so ``+ step`` is exact."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-1024, 1024, size=params) / 64.0).astype(np.float32)


client = ClientApp()


@client.train()
def train(message: Message, context: Context) -> Message:
    step = np.float32(context.run_config["step"])
    arrays = message.content["arrays"]
    updated = ArrayRecord({name: a + step for name, a in arrays.items()})
    weight = int(context.node_config["partition-id"]) % 7 + 1
    metrics = MetricRecord({"num-examples": weight})
    return Message(RecordDict({"arrays": updated, "metrics": metrics}), reply_to=message)


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    seed = int(config["seed"])
    initial = ArrayRecord({ARRAY_NAME: initial_model(int(config["params"]), seed)})
    strategy = FedAvg(
        fraction_train=float(config["fraction"]),
        fraction_evaluate=0.0,
        min_train_nodes=1,
        min_available_nodes=1,
        seed=seed,
    )
    strategy.start(grid, initial, num_rounds=int(config["rounds"]))
