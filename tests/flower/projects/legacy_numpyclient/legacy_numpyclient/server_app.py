"""legacy-numpyclient: a ServerApp running Flower's DefaultWorkflow with a legacy FedAvg."""

import numpy as np
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow

from legacy_numpyclient.client_app import NUM_FEATURES

app = ServerApp()


def fit_config(server_round: int):
    return {"round": server_round}


def weighted_accuracy(metrics):
    total = sum(n for n, _ in metrics)
    return {"accuracy": sum(n * m["accuracy"] for n, m in metrics) / total}


@app.main()
def main(grid: Grid, context: Context) -> None:
    num_rounds = int(context.run_config["num-server-rounds"])
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=3,
        min_evaluate_clients=3,
        min_available_clients=3,
        on_fit_config_fn=fit_config,
        evaluate_metrics_aggregation_fn=weighted_accuracy,
        initial_parameters=ndarrays_to_parameters([np.zeros(NUM_FEATURES), np.zeros(1)]),
    )
    context = LegacyContext(
        context=context, config=ServerConfig(num_rounds=num_rounds), strategy=strategy
    )
    workflow = DefaultWorkflow()
    workflow(grid, context)

    # Keep the final model: the workflow leaves it in the server context's state.
    weights, bias = context.state.array_records["parameters"].to_numpy_ndarrays()
    np.savez("final_model.npz", weights=weights, bias=bias)
