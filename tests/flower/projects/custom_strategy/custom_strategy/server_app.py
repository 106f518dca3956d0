"""custom-strategy: FedAvg that moves the global model only part of the way."""

import numpy as np
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg


class FedAvgWithServerLearningRate(FedAvg):
    """FedAvg whose global model moves ``server_lr`` of the way to the replies' average."""

    def __init__(self, server_lr: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.server_lr = server_lr
        self.current: ArrayRecord | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config, grid: Grid):
        self.current = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        average, metrics = super().aggregate_train(server_round, replies)
        if average is None or self.current is None:
            return average, metrics
        old = self.current.to_numpy_ndarrays()
        new = average.to_numpy_ndarrays()
        moved = [o + self.server_lr * (n - o) for o, n in zip(old, new)]
        return ArrayRecord(moved), metrics


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    strategy = FedAvgWithServerLearningRate(
        server_lr=float(context.run_config["server-learning-rate"]),
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=5,
        min_available_nodes=5,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord([np.zeros((3, 2), dtype=np.float32)]),
        num_rounds=int(context.run_config["num-server-rounds"]),
    )
    (model,) = result.arrays.to_numpy_ndarrays()
    np.savez("final_model.npz", model=model)
