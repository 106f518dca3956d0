"""legacy-clipping: a NumPyClient whose updates Flower's fixedclipping_mod clips."""

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import fixedclipping_mod
from flwr.common import Context


class MeanClient(NumPyClient):
    """Moves the model toward its partition's mean, a long way: clipping bounds the step."""

    def __init__(self, partition_id: int) -> None:
        rng = np.random.default_rng(partition_id)
        self.target = rng.normal(loc=3.0 * (partition_id + 1), size=5)

    def fit(self, parameters, config):
        (model,) = parameters
        return [model + 0.9 * (self.target - model)], 10 + partition_size(self.target), {}

    def evaluate(self, parameters, config):
        (model,) = parameters
        return float(np.mean((model - self.target) ** 2)), 10, {}


def partition_size(target: np.ndarray) -> int:
    return int(abs(target[0]) * 10)


def client_fn(context: Context):
    return MeanClient(int(context.node_config["partition-id"])).to_client()


app = ClientApp(client_fn=client_fn, mods=[fixedclipping_mod])
