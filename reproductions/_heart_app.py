"""The Fed-Heart-Disease apps: logistic regression, one node per hospital (FLamby's protocol).

Importable by simulation workers; ``fed_heart_disease.py`` drives it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Context, Message, MetricRecord, RecordDict
from corolla.data import Dataset, load_fed_heart_disease
from corolla.server import Grid, ServerApp
from corolla.strategy import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedProx,
    FedYogi,
    Scaffold,
    Strategy,
    store_control,
    update_control,
)
from corolla.strategy import load_control as load_node_control

#: Gradient correction hook: ``(grad_w, grad_b, w, b) -> (grad_w, grad_b)``.
Correction = Callable[[np.ndarray, float, np.ndarray, float], tuple[np.ndarray, float]]

NUM_FEATURES = 13


@functools.lru_cache(maxsize=2)
def sites(directory: str) -> list[Dataset]:
    return load_fed_heart_disease(directory)


def initial_arrays(seed: int) -> ArrayRecord:
    """PyTorch's ``nn.Linear(13, 1)`` initialisation: U(-1/sqrt(13), 1/sqrt(13)), seeded."""
    rng = np.random.default_rng([seed, 1013])
    bound = 1.0 / np.sqrt(NUM_FEATURES)
    return ArrayRecord(
        {
            "weight": rng.uniform(-bound, bound, NUM_FEATURES).astype(np.float32),
            "bias": rng.uniform(-bound, bound, 1).astype(np.float32),
        }
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def accuracy(arrays: ArrayRecord, x: np.ndarray, y: np.ndarray) -> float:
    p = _sigmoid(x @ arrays["weight"] + arrays["bias"][0])
    return float(((p >= 0.5) == (y == 1)).mean())


def mean_site_accuracy(arrays: ArrayRecord, directory: str) -> float:
    """FLamby's metric: the mean over hospitals of each one's test accuracy."""
    return float(np.mean([accuracy(arrays, s.x_test, s.y_test) for s in sites(directory)]))


def sgd(
    arrays: ArrayRecord,
    x: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
    correction: Correction | None = None,
) -> tuple[ArrayRecord, float]:
    """``steps`` mini-batch SGD steps on the binary cross-entropy, cycling shuffled epochs;
    ``correction`` adjusts each gradient (FedProx's proximal term, SCAFFOLD's controls)."""
    w = np.array(arrays["weight"], dtype=np.float64)
    b = float(arrays["bias"][0])
    order = rng.permutation(len(y))
    position = 0
    losses = []
    for _ in range(steps):
        if position >= len(order):
            order, position = rng.permutation(len(y)), 0
        batch = order[position : position + batch_size]
        position += batch_size
        p = _sigmoid(x[batch] @ w + b)
        losses.append(
            -np.mean(y[batch] * np.log(p + 1e-12) + (1 - y[batch]) * np.log(1 - p + 1e-12))
        )
        error = (p - y[batch]) / len(batch)
        grad_w, grad_b = x[batch].T @ error, float(error.sum())
        if correction is not None:
            grad_w, grad_b = correction(grad_w, grad_b, w, b)
        w -= lr * grad_w
        b -= lr * grad_b
    new = ArrayRecord({"weight": w.astype(np.float32), "bias": np.asarray([b], dtype=np.float32)})
    return new, float(np.mean(losses))


client = ClientApp()


def _correction(message: Message, context: Context) -> tuple[Correction | None, dict]:
    """The method's client-side gradient correction, and what finishing it needs."""
    content = message.content
    config = content["config"]
    global_arrays: ArrayRecord = content["arrays"]  # type: ignore[assignment]
    g_w = np.asarray(global_arrays["weight"], np.float64)
    g_b = float(global_arrays["bias"][0])
    if "proximal-mu" in config and float(config["proximal-mu"]) > 0:  # type: ignore[arg-type]
        mu = float(config["proximal-mu"])  # type: ignore[arg-type]

        def proximal(
            gw: np.ndarray, gb: float, w: np.ndarray, b: float
        ) -> tuple[np.ndarray, float]:
            return gw + mu * (w - g_w), gb + mu * (b - g_b)

        return proximal, {}
    if "control" in content:
        control: ArrayRecord = content["control"]  # type: ignore[assignment]
        local = load_node_control(context, global_arrays)
        shift_w = np.asarray(control["weight"]) - np.asarray(local["weight"])
        shift_b = float(control["bias"][0] - local["bias"][0])

        def scaffold(
            gw: np.ndarray, gb: float, w: np.ndarray, b: float
        ) -> tuple[np.ndarray, float]:
            return gw + shift_w, gb + shift_b

        return scaffold, {"control": control, "local": local}
    return None, {}


@client.train()
def train(message: Message, context: Context) -> Message:
    site = sites(str(context.run_config["data"]))[int(context.node_config["partition-id"])]
    server_round = int(message.content["config"]["server-round"])
    rng = np.random.default_rng(
        [int(context.run_config["seed"]), int(context.node_config["partition-id"]), server_round]
    )
    steps = int(context.run_config["local-steps"])
    lr = float(context.run_config["client-lr"])
    correction, extra = _correction(message, context)
    global_arrays: ArrayRecord = message.content["arrays"]  # type: ignore[assignment]
    arrays, loss = sgd(
        global_arrays,
        site.x_train,
        site.y_train,
        steps=steps,
        batch_size=int(context.run_config["batch-size"]),
        lr=lr,
        rng=rng,
        correction=correction,
    )
    records: dict = {
        "arrays": arrays,
        "metrics": MetricRecord({"num-examples": len(site.y_train), "train-loss": loss}),
    }
    if "control" in extra:
        new_local, delta = update_control(
            global_arrays, arrays, extra["control"], extra["local"], steps, lr
        )
        store_control(context, new_local)
        records["control-delta"] = delta
    return Message(RecordDict(records), reply_to=message)


#: Each federated method: its client learning rate, and its server side.
METHODS: dict[str, tuple[float, Callable[..., Strategy]]] = {
    "FedAvg": (0.001, FedAvg),
    "FedProx": (0.001, lambda **o: FedProx(proximal_mu=0.01, **o)),
    "SCAFFOLD": (0.001, lambda **o: Scaffold(server_learning_rate=1.0, **o)),
    "FedAdam": (0.01, lambda **o: FedAdam(eta=0.01, eta_l=0.01, **o)),
    "FedYogi": (0.003162, lambda **o: FedYogi(eta=0.01, eta_l=0.003162, **o)),
    "FedAdagrad": (0.003162, lambda **o: FedAdagrad(eta=0.316228, eta_l=0.003162, **o)),
}


def make_strategy(name: str, seed: int) -> Strategy:
    """The server side of a federated method: every hospital trains every round."""
    factory = METHODS[name][1]
    return factory(fraction_evaluate=0.0, min_train_nodes=4, min_available_nodes=4, seed=seed)


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    directory = str(config["data"])
    strategy = make_strategy(str(config["strategy"]), int(config["seed"]))
    strategy.start(
        grid,
        initial_arrays(int(config["seed"])),
        num_rounds=int(config["rounds"]),
        evaluate_fn=lambda _, arrays: MetricRecord(
            {"accuracy": mean_site_accuracy(arrays, directory)}
        ),
    )
