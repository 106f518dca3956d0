"""sklearn-wine: the data, the model and its parameters as NumPy arrays.

scikit-learn is imported where the data and the model are made: the ServerApp, which
needs only the initial parameters, is spared its import (seconds).
"""

import numpy as np

NUM_FEATURES = 13
CLASSES = np.arange(3)
#: The wine samples are shuffled once, with this seed, then split among the partitions.
DATA_SEED = 7


def load_data(partition_id: int, num_partitions: int):
    """The partition's share of the wine data, standardized with the whole data's
    statistics, split 75/25 into training and test sets."""
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    part = np.array_split(order, num_partitions)[partition_id]
    split = int(0.75 * len(part))
    return (x[part[:split]], y[part[:split]]), (x[part[split:]], y[part[split:]])


def make_model(penalty: str, learning_rate: float):
    """Logistic regression trained by SGD: a constant step, the data in its order."""
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(
        loss="log_loss",
        penalty=penalty,
        learning_rate="constant",
        eta0=learning_rate,
        shuffle=False,
        random_state=0,
    )


def initial_parameters() -> list[np.ndarray]:
    return [np.zeros((len(CLASSES), NUM_FEATURES)), np.zeros(len(CLASSES))]


def get_parameters(model) -> list[np.ndarray]:
    return [model.coef_, model.intercept_]


def set_parameters(model, parameters: list[np.ndarray]) -> None:
    model.classes_ = CLASSES
    model.coef_ = parameters[0]
    model.intercept_ = parameters[1]
