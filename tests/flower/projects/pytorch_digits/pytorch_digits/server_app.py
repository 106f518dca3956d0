"""pytorch-digits: a Flower ServerApp."""

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from pytorch_digits.task import initial_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    num_rounds = int(context.run_config["num-server-rounds"])
    lr = float(context.run_config["learning-rate"])

    arrays = ArrayRecord(initial_model().state_dict())
    # Every round trains and evaluates on all three nodes of the federation.
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=float(context.run_config["fraction-evaluate"]),
        min_train_nodes=3,
        min_evaluate_nodes=3,
        min_available_nodes=3,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=arrays,
        train_config=ConfigRecord({"lr": lr}),
        num_rounds=num_rounds,
    )
    state_dict = result.arrays.to_torch_state_dict()
    np.savez("final_model.npz", **{name: t.numpy() for name, t in state_dict.items()})
