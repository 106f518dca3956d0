"""The coordinator: FedAvg over the nodes, evaluating the global model on held-out data."""

from __future__ import annotations

from corolla.core import ArrayRecord, Context, MetricRecord
from corolla.server import Grid, ServerApp
from corolla.strategy import FedAvg

from .task import dataset, initial_arrays, loss_and_accuracy

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    seed = int(config.get("seed", 0))
    test = dataset(seed)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        loss, accuracy = loss_and_accuracy(arrays, test.x_test, test.y_test)
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    strategy = FedAvg(
        fraction_train=float(config["fraction-train"]),
        fraction_evaluate=float(config["fraction-evaluate"]),
        seed=seed,
    )
    strategy.start(
        grid,
        initial_arrays(),
        num_rounds=int(config["num-server-rounds"]),
        evaluate_fn=evaluate,
    )
