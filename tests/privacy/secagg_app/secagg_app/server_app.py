"""The coordinator: FedAvg over every node, its training aggregated with SecAgg+; with a
noise multiplier, DP-FedAvg whose nodes clip and noise their updates."""

from __future__ import annotations

import numpy as np

from corolla.core import ArrayRecord, Context
from corolla.privacy import CentralDP, SecAggPlus
from corolla.server import Grid, ServerApp
from corolla.strategy import FedAvg

app = ServerApp()


def initial_arrays() -> ArrayRecord:
    return ArrayRecord({"w": np.linspace(-1, 1, 200, dtype=np.float32).reshape(10, 20)})


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    fedavg = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3, seed=0)
    inner: FedAvg | CentralDP = fedavg
    if float(config["noise-multiplier"]) > 0:
        inner = CentralDP(
            fedavg,
            noise_multiplier=float(config["noise-multiplier"]),
            clipping_norm=float(config["clipping-norm"]),
            clipping="client",
            delta=1e-3,
        )
    strategy = SecAggPlus(
        inner,
        clipping_range=float(config["clipping-range"]),
        max_weight=16,
        metrics=["loss"],
        seed=0,
    )
    strategy.start(grid, initial_arrays(), num_rounds=int(config["num-server-rounds"]))
