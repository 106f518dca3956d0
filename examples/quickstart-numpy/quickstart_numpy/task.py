"""The model, the data and the training loop: plain NumPy, nothing federated here."""

from __future__ import annotations

import functools

import numpy as np

from corolla.core import ArrayRecord
from corolla.data import Dataset, dirichlet_partition, load_digits

NUM_FEATURES = 64
NUM_CLASSES = 10


@functools.lru_cache(maxsize=2)
def dataset(seed: int) -> Dataset:
    """Digits, split 80/20 into train and held-out test data (loaded once per process)."""
    return load_digits(test_fraction=0.2, seed=seed)


@functools.lru_cache(maxsize=2)
def partitions(num_partitions: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Non-IID split of the training data: class proportions ~ Dirichlet(alpha) per node."""
    labels = dataset(seed).y_train
    return dirichlet_partition(labels, num_partitions, alpha, np.random.default_rng(seed))


def load_partition(
    partition_id: int, num_partitions: int, alpha: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    data = dataset(seed)
    index = partitions(num_partitions, alpha, seed)[partition_id]
    return data.x_train[index], data.y_train[index]


def initial_arrays() -> ArrayRecord:
    return ArrayRecord(
        {
            "weights": np.zeros((NUM_FEATURES, NUM_CLASSES), dtype=np.float32),
            "bias": np.zeros(NUM_CLASSES, dtype=np.float32),
        }
    )


def _probabilities(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    logits = x @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_accuracy(arrays: ArrayRecord, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p = _probabilities(arrays["weights"], arrays["bias"], x)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    return loss, float((p.argmax(axis=1) == y).mean())


def train(
    arrays: ArrayRecord,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    rng: np.random.Generator,
) -> tuple[ArrayRecord, float]:
    """Mini-batch SGD on the cross-entropy; returns new arrays and the mean training loss."""
    w = np.array(arrays["weights"], dtype=np.float32)
    b = np.array(arrays["bias"], dtype=np.float32)
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[y]
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            p = _probabilities(w, b, x[batch])
            losses.append(-np.log(p[np.arange(len(batch)), y[batch]] + 1e-12).mean())
            grad = (p - onehot[batch]) / len(batch)
            w -= learning_rate * (x[batch].T @ grad)
            b -= learning_rate * grad.sum(axis=0)
    return ArrayRecord({"weights": w, "bias": b}), float(np.mean(losses)) if losses else 0.0
