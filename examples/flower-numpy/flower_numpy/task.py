"""The data and the model: each partition draws its own points of one linear relation."""

import numpy as np

NUM_FEATURES = 8
TRUE_WEIGHTS = np.linspace(-1.0, 1.0, NUM_FEATURES)


def load_data(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """The partition's points: 40 to 80 of them, shifted by partition (non-IID)."""
    rng = np.random.default_rng(1000 + partition_id)
    n = 40 + 40 * partition_id // max(num_partitions, 1)
    x = rng.normal(loc=partition_id / max(num_partitions, 1), size=(n, NUM_FEATURES))
    y = x @ TRUE_WEIGHTS + 0.5 + rng.normal(scale=0.1, size=n)
    return x, y


def initial_model() -> dict[str, np.ndarray]:
    return {"weights": np.zeros(NUM_FEATURES), "bias": np.zeros(1)}


def loss(model: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    error = x @ model["weights"] + model["bias"][0] - y
    return float(np.mean(error**2))


def train(model: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, steps: int, lr: float):
    weights, bias = model["weights"].copy(), model["bias"].copy()
    for _ in range(steps):
        error = x @ weights + bias[0] - y
        weights -= lr * 2 * x.T @ error / len(y)
        bias -= lr * 2 * np.mean(error)
    return {"weights": weights, "bias": bias}
