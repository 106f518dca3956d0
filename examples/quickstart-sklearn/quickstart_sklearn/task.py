"""The model, the data and the training loop: plain scikit-learn, nothing federated here."""

from __future__ import annotations

import functools

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss

from corolla.data import Dataset, dirichlet_partition, load_digits
from corolla.frameworks import init_sklearn_linear

NUM_FEATURES = 64
CLASSES = np.arange(10)


def new_model(*, learning_rate: float = 0.1, l2_penalty: float = 1e-4) -> SGDClassifier:
    """Logistic regression trained by SGD, with zero coefficients for all ten classes.

    ``learning_rate`` and ``l2_penalty`` matter for training only, not for predictions.

    Every class is set up front: a node whose data lack some digits still trains and
    returns coefficients of the same shape as every other node.
    """
    model = SGDClassifier(
        loss="log_loss",
        penalty="l2",
        alpha=l2_penalty,
        learning_rate="constant",
        eta0=learning_rate,
        shuffle=False,  # train() shuffles, from a seeded generator
        random_state=0,
    )
    init_sklearn_linear(model, NUM_FEATURES, CLASSES)
    return model


@functools.lru_cache(maxsize=2)
def dataset(seed: int) -> Dataset:
    """Digits, split 80/20 into train and held-out test data (loaded once per process)."""
    return load_digits(test_fraction=0.2, seed=seed)


@functools.lru_cache(maxsize=2)
def partitions(num_partitions: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Non-IID split of the training data: class proportions ~ Dirichlet(alpha) per node.

    Every node computes the same split from the same seed, so partitions never overlap.
    """
    labels = dataset(seed).y_train
    return dirichlet_partition(labels, num_partitions, alpha, np.random.default_rng(seed))


def load_partition(
    partition_id: int, num_partitions: int, alpha: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A node's data as ``(x_train, y_train, x_val, y_val)``: 80/20 of its partition.

    Features are float64, the dtype of the model's coefficients.
    """
    data = dataset(seed)
    index = partitions(num_partitions, alpha, seed)[partition_id]
    index = np.random.default_rng([seed, partition_id]).permutation(index)
    num_val = max(1, len(index) // 5)
    x = data.x_train[index].astype(np.float64)
    y = data.y_train[index]
    return x[num_val:], y[num_val:], x[:num_val], y[:num_val]


def test_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test set, which no node trains on."""
    data = dataset(seed)
    return data.x_test.astype(np.float64), data.y_test


def train(
    model: SGDClassifier, x: np.ndarray, y: np.ndarray, *, epochs: int, rng: np.random.Generator
) -> float:
    """``epochs`` passes of SGD over shuffled data, continuing from the model's coefficients.

    Returns the log-loss on the training data after training.
    """
    for _ in range(epochs):
        order = rng.permutation(len(y))
        model.partial_fit(x[order], y[order], classes=CLASSES)
    return evaluate(model, x, y)[0]


def evaluate(model: SGDClassifier, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Log-loss and accuracy of ``model`` on ``(x, y)``."""
    loss = log_loss(y, model.predict_proba(x), labels=CLASSES)
    accuracy = float((model.predict(x) == y).mean())
    return float(loss), accuracy
