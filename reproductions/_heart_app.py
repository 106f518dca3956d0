"""The Fed-Heart-Disease apps: logistic regression, one node per hospital (FLamby's protocol).

Importable by simulation workers; ``fed_heart_disease.py`` drives it. What follows FLamby's
code (``flamby/strategies/utils.py``, ``fed_opt.py``, ``config_heart_disease.json``):
plain SGD on each node, over a stream of batches that carries on across rounds and is
reshuffled only when an epoch is exhausted (FLamby's ``DataLoaderWithMemory``); FedOpt's
``beta_1 = 0.9``, ``beta_2 = 0.999`` and ``tau = 1e-8``; FLamby's server optimizers
(``fed_opt.py``, ``scaffold.py``), which differ from Corolla's Flower-compatible defaults in
three options: FedAdam without bias correction, FedAdagrad with a first moment
(``beta_1 = 0.9``), and SCAFFOLD's models and control deltas averaged with weights
``num-examples``; Adam for pooled and single-site training; accuracy with ``p > 0.5``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

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
STREAM_KEY = "heart-batch-stream"


@functools.lru_cache(maxsize=4)
def sites(directory: str, normalization: Literal["site", "pooled"] = "site") -> list[Dataset]:
    return load_fed_heart_disease(directory, normalization=normalization)


def _torch_uniform(draws: np.ndarray, bound: float) -> np.ndarray:
    """``tensor.uniform_(-bound, bound)`` on a float32 CPU tensor, from raw 32-bit draws:
    the low 24 bits of each draw scaled to [0, 1), the bounds rounded to float32 first."""
    low, high = float(np.float32(-bound)), float(np.float32(bound))
    unit = (draws & 0xFFFFFF).astype(np.float64) * 2.0**-24
    return (unit * (high - low) + low).astype(np.float32)


def initial_arrays(seed: int) -> ArrayRecord:
    """``torch.manual_seed(seed); nn.Linear(13, 1)``, bit for bit, without torch.

    FLamby draws its initial model that way (``fed_benchmark.py``, seeds 42-46), so a seed
    here starts every method from FLamby's own starting point. Torch's CPU generator is the
    Mersenne Twister seeded as NumPy's legacy ``RandomState`` seeds it; the weight is drawn
    first (``kaiming_uniform_`` with ``a = sqrt(5)``), then the bias (bound ``1/sqrt(13)``).
    """
    draws = np.random.RandomState(seed).randint(0, 2**32, size=NUM_FEATURES + 1, dtype=np.uint32)
    gain = math.sqrt(2.0 / (1 + 5))
    weight_bound = math.sqrt(3.0) * gain / math.sqrt(NUM_FEATURES)
    return ArrayRecord(
        {
            "weight": _torch_uniform(draws[:NUM_FEATURES], weight_bound),
            "bias": _torch_uniform(draws[NUM_FEATURES:], 1.0 / math.sqrt(NUM_FEATURES)),
        }
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def accuracy(arrays: ArrayRecord, x: np.ndarray, y: np.ndarray) -> float:
    p = _sigmoid(x @ arrays["weight"] + arrays["bias"][0])
    return float(((p > 0.5) == (y == 1)).mean())


def mean_site_accuracy(arrays: ArrayRecord, directory: str) -> float:
    """FLamby's metric: the mean over hospitals of each one's test accuracy."""
    return float(np.mean([accuracy(arrays, s.x_test, s.y_test) for s in sites(directory)]))


class BatchStream:
    """Shuffled mini-batches of ``size`` rows without end, as FLamby's ``DataLoaderWithMemory``.

    Each epoch is a fresh permutation drawn from ``(seed, epoch)``; an epoch's last batch may
    be short. The position survives between rounds (:meth:`to_record`, :meth:`from_record`),
    so a round starts where the previous one stopped instead of on a new epoch.
    """

    def __init__(self, size: int, seed: list[int], *, epoch: int = 0, position: int = 0) -> None:
        self.size = size
        self.seed = list(seed)
        self.epoch = epoch
        self.position = position
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([*self.seed, self.epoch]).permutation(self.size)

    def next(self, batch_size: int) -> np.ndarray:
        if self.position >= self.size:
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation()
        batch = self._order[self.position : self.position + batch_size]
        self.position += batch_size
        return batch

    def to_record(self) -> ArrayRecord:
        return ArrayRecord({"epoch": np.int64(self.epoch), "position": np.int64(self.position)})

    @classmethod
    def from_record(cls, record: object, size: int, seed: list[int]) -> BatchStream:
        if not isinstance(record, ArrayRecord):
            return cls(size, seed)
        return cls(size, seed, epoch=int(record["epoch"]), position=int(record["position"]))


def _bce(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)))


def sgd(
    arrays: ArrayRecord,
    x: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    stream: BatchStream,
    correction: Correction | None = None,
) -> tuple[ArrayRecord, float]:
    """``steps`` mini-batch SGD steps on the binary cross-entropy, batches from ``stream``;
    ``correction`` adjusts each gradient (FedProx's proximal term, SCAFFOLD's controls)."""
    w = np.array(arrays["weight"], dtype=np.float64)
    b = float(arrays["bias"][0])
    losses = []
    for _ in range(steps):
        batch = stream.next(batch_size)
        p = _sigmoid(x[batch] @ w + b)
        losses.append(_bce(p, y[batch]))
        error = (p - y[batch]) / len(batch)
        grad_w, grad_b = x[batch].T @ error, float(error.sum())
        if correction is not None:
            grad_w, grad_b = correction(grad_w, grad_b, w, b)
        w -= lr * grad_w
        b -= lr * grad_b
    new = ArrayRecord({"weight": w.astype(np.float32), "bias": np.asarray([b], dtype=np.float32)})
    return new, float(np.mean(losses))


def adam(
    arrays: ArrayRecord,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
) -> ArrayRecord:
    """FLamby's single-centric training (``train_single_centric``): ``torch.optim.Adam``
    (betas 0.9 / 0.999, eps 1e-8) over ``epochs`` shuffled epochs, last batch short."""
    params = np.concatenate([arrays["weight"], arrays["bias"]]).astype(np.float64)
    m, v = np.zeros_like(params), np.zeros_like(params)
    t = 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            p = _sigmoid(x[batch] @ params[:-1] + params[-1])
            error = (p - y[batch]) / len(batch)
            grad = np.concatenate([x[batch].T @ error, [error.sum()]])
            t += 1
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad**2
            params -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return ArrayRecord(
        {"weight": params[:-1].astype(np.float32), "bias": params[-1:].astype(np.float32)}
    )


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
    partition = int(context.node_config["partition-id"])
    site = sites(str(context.run_config["data"]))[partition]
    stream = BatchStream.from_record(
        context.state.get(STREAM_KEY),
        len(site.y_train),
        [int(context.run_config["seed"]), partition],
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
        stream=stream,
        correction=correction,
    )
    context.state = context.state | {STREAM_KEY: stream.to_record()}
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


#: FedOpt's moments and adaptivity in FLamby (``config_heart_disease.json``), not Flower's
#: defaults (``beta_2 = 0.99``, ``tau = 1e-3``).
FEDOPT = {"beta_1": 0.9, "beta_2": 0.999, "tau": 1e-8}

#: Each federated method: its client learning rate, and its server side with FLamby's
#: conventions where they are not Corolla's defaults: FedAdam's rate without Flower's bias
#: correction, FedAdagrad's first moment (FLamby's FedAdagrad keeps one, as Reddi et al.'s
#: Algorithm 2 does), SCAFFOLD's means weighted by training-set size.
METHODS: dict[str, tuple[float, Callable[..., Strategy]]] = {
    "FedAvg": (0.001, FedAvg),
    "FedProx": (0.001, lambda **o: FedProx(proximal_mu=0.01, **o)),
    "SCAFFOLD": (0.001, lambda **o: Scaffold(server_learning_rate=1.0, weighted=True, **o)),
    "FedAdam": (
        0.01,
        lambda **o: FedAdam(eta=0.01, eta_l=0.01, bias_correction=False, **FEDOPT, **o),
    ),
    "FedYogi": (0.003162, lambda **o: FedYogi(eta=0.01, eta_l=0.003162, **FEDOPT, **o)),
    "FedAdagrad": (
        0.003162,
        lambda **o: FedAdagrad(
            eta=0.316228, eta_l=0.003162, beta_1=FEDOPT["beta_1"], tau=FEDOPT["tau"], **o
        ),
    ),
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
