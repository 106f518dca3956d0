"""legacy-numpyclient: a NumPyClient that counts its rounds in the context's state."""

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context, MetricRecord

NUM_FEATURES = 4


def load_data(partition_id: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7 + partition_id)
    x = rng.normal(size=(60, NUM_FEATURES))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 * partition_id > 0).astype(np.float64)
    return x, y


def predict(weights: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ weights + bias[0])))


class LogisticClient(NumPyClient):
    def __init__(self, context: Context) -> None:
        self.x, self.y = load_data(int(context.node_config["partition-id"]))
        self.epochs = int(context.run_config["local-epochs"])
        self.lr = float(context.run_config["learning-rate"])
        self.state = context.state

    def fit(self, parameters, config):
        # State kept by the node across rounds: how many times this client trained, which
        # sets its learning rate.
        fits = 1
        if "history" in self.state:
            fits += int(self.state["history"]["fits"])
        self.state["history"] = MetricRecord({"fits": fits})
        lr = self.lr / fits
        weights, bias = (p.copy() for p in parameters)
        for _ in range(self.epochs):
            error = predict(weights, bias, self.x) - self.y
            weights -= lr * self.x.T @ error / len(self.y)
            bias -= lr * np.mean(error)
        return [weights, bias], len(self.y), {"fits": fits, "round": int(config["round"])}

    def evaluate(self, parameters, config):
        weights, bias = parameters
        p = np.clip(predict(weights, bias, self.x), 1e-9, 1 - 1e-9)
        loss = float(-np.mean(self.y * np.log(p) + (1 - self.y) * np.log(1 - p)))
        accuracy = float(np.mean((p > 0.5) == self.y))
        return loss, len(self.y), {"accuracy": accuracy}


def client_fn(context: Context):
    return LogisticClient(context).to_client()


app = ClientApp(client_fn=client_fn)
