"""sklearn-wine: a server_fn ServerApp with Flower's legacy FedAvg."""

import numpy as np
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg

from sklearn_wine.task import initial_parameters


def save_model(server_round, parameters, config):
    """Centralized evaluation: keeps the latest global model."""
    coef, intercept = parameters
    np.savez("final_model.npz", coef=coef, intercept=intercept)
    return None


def weighted_accuracy(metrics):
    total = sum(n for n, _ in metrics)
    return {"accuracy": sum(n * m["accuracy"] for n, m in metrics) / total}


def server_fn(context: Context) -> ServerAppComponents:
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=3,
        min_evaluate_clients=3,
        min_available_clients=3,
        initial_parameters=ndarrays_to_parameters(initial_parameters()),
        evaluate_fn=save_model,
        evaluate_metrics_aggregation_fn=weighted_accuracy,
    )
    config = ServerConfig(num_rounds=int(context.run_config["num-server-rounds"]))
    return ServerAppComponents(strategy=strategy, config=config)


app = ServerApp(server_fn=server_fn)
