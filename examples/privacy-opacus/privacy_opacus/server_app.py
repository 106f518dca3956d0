"""The coordinator: FedAvg over the nodes' DP-SGD models, evaluated on held-out data."""

from __future__ import annotations

from corolla.core import ArrayRecord, Context, MetricRecord
from corolla.frameworks import arrays_from_torch, load_torch_arrays
from corolla.server import Grid, ServerApp
from corolla.strategy import FedAvg

from .task import Net, evaluate, new_model, test_data

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    seed = int(config.get("seed", 0))
    x_test, y_test = test_data(seed)

    def evaluate_global(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        net = Net()
        load_torch_arrays(net, arrays)
        loss, accuracy = evaluate(net, x_test, y_test)
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    strategy = FedAvg(
        fraction_train=float(config["fraction-train"]),
        fraction_evaluate=float(config["fraction-evaluate"]),
        seed=seed,
    )
    strategy.start(
        grid,
        arrays_from_torch(new_model(seed)),
        num_rounds=int(config["num-server-rounds"]),
        train_config={
            "local-epochs": int(config["local-epochs"]),
            "batch-size": int(config["batch-size"]),
            "learning-rate": float(config["learning-rate"]),
        },
        evaluate_fn=evaluate_global,
    )
