"""flower-numpy: a Flower ServerApp."""

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flower_numpy.task import initial_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    num_rounds = int(context.run_config["num-server-rounds"])
    lr = float(context.run_config["learning-rate"])
    fraction_evaluate = float(context.run_config["fraction-evaluate"])

    model = initial_model()
    arrays = ArrayRecord([model["weights"], model["bias"]])
    # Every round waits for, and trains on, all four nodes of the federation.
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=fraction_evaluate,
        min_train_nodes=4,
        min_evaluate_nodes=4,
        min_available_nodes=4,
    )

    result = strategy.start(
        grid=grid,
        initial_arrays=arrays,
        train_config=ConfigRecord({"lr": lr}),
        num_rounds=num_rounds,
    )
    weights, bias = result.arrays.to_numpy_ndarrays()
    print(f"final model: weights {weights.round(3).tolist()}, bias {bias.round(3).tolist()}")
    np.savez("final_model.npz", weights=weights, bias=bias)
