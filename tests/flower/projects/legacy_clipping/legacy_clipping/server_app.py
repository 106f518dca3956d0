"""legacy-clipping: a server_fn ServerApp; the strategy wrapper clips on the clients."""

import numpy as np
from flwr.common import Context, ndarrays_to_parameters
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg


def save_model(server_round, parameters, config):
    """Centralized evaluation: keeps the latest global model."""
    np.savez("final_model.npz", model=parameters[0])
    return None


def server_fn(context: Context) -> ServerAppComponents:
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=3,
        min_evaluate_clients=3,
        min_available_clients=3,
        initial_parameters=ndarrays_to_parameters([np.zeros(5)]),
        evaluate_fn=save_model,
    )
    clipped = DifferentialPrivacyClientSideFixedClipping(
        strategy,
        noise_multiplier=0.0,
        clipping_norm=float(context.run_config["clipping-norm"]),
        num_sampled_clients=3,
    )
    config = ServerConfig(num_rounds=int(context.run_config["num-server-rounds"]))
    return ServerAppComponents(strategy=clipped, config=config)


app = ServerApp(server_fn=server_fn)
