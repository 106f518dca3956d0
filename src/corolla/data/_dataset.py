"""The ``Dataset`` value and the seeded helpers that build one: stratified split, scaling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from corolla.core import ConfigError

from ._checks import check_fraction, check_int

__all__ = ["Dataset", "from_arrays", "standardize", "stratified_split"]

Features = NDArray[np.float32]
Labels = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of a classification data set.

    Attributes
    ----------
    x_train, x_test
        ``float32`` feature matrices of shape ``(n, num_features)``.
    y_train, y_test
        ``int64`` labels in ``0 .. num_classes - 1``.
    num_classes
        Number of classes of the task (a split may lack some of them).
    name
        Short name, e.g. ``"digits"``.

    Raises
    ------
    ConfigError
        On construction, if the dtypes, shapes or label range disagree.
    """

    x_train: Features
    y_train: Labels
    x_test: Features
    y_test: Labels
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x = getattr(self, f"x_{part}")
            y = getattr(self, f"y_{part}")
            if x.dtype != np.float32 or x.ndim != 2:
                raise ConfigError(f"x_{part} must be a 2-D float32 array")
            if y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise ConfigError(f"y_{part} must be int64 with one label per row of x_{part}")
            if y.size and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ConfigError(f"y_{part} has labels outside 0..{self.num_classes - 1}")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ConfigError("x_train and x_test have different numbers of features")

    @property
    def num_features(self) -> int:
        """Number of feature columns."""
        return int(self.x_train.shape[1])


def stratified_split(
    labels: Labels, test_fraction: float, rng: np.random.Generator
) -> tuple[Labels, Labels]:
    """Return shuffled ``(train_indices, test_indices)`` with classes in equal proportion.

    Class ``c`` with ``n_c`` samples puts ``round(n_c * test_fraction)`` of them in the test
    set, clipped so that a class of two or more samples has at least one sample on each side.
    Both index arrays are returned in random order, since some sources (e.g. MNIST-5k) are
    sorted by label.

    Raises
    ------
    ConfigError
        If ``test_fraction`` is not strictly between 0 and 1.
    """
    test_fraction = check_fraction("test_fraction", test_fraction)
    train: list[Labels] = []
    test: list[Labels] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label)).astype(np.int64)
        n = members.size
        n_test = min(max(round(n * test_fraction), 1), n - 1) if n >= 2 else 0
        test.append(members[:n_test])
        train.append(members[n_test:])
    return (
        rng.permutation(np.concatenate(train)).astype(np.int64),
        rng.permutation(np.concatenate(test)).astype(np.int64),
    )


def standardize(x_train: Features, x_test: Features) -> tuple[Features, Features]:
    """Centre and scale both matrices with the mean and standard deviation of ``x_train``.

    A constant training column keeps scale 1, so it maps to zero instead of dividing by 0.
    """
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    std[std == 0.0] = 1.0
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )


def from_arrays(
    name: str,
    features: NDArray[np.floating] | NDArray[np.integer],
    labels: NDArray[np.integer],
    *,
    test_fraction: float,
    seed: int,
    divide_by: float | None,
) -> Dataset:
    """Split ``features``/``labels`` with a seeded stratified split and scale the features.

    Features are divided by ``divide_by`` (e.g. 16 for 4-bit pixels, 255 for 8-bit pixels),
    or, when it is ``None``, standardized with the training set's statistics only.

    Raises
    ------
    ConfigError
        If ``test_fraction`` is not strictly between 0 and 1 or ``seed`` is not a
        non-negative integer.
    """
    seed = check_int("seed", seed, minimum=0)
    y = np.asarray(labels, dtype=np.int64)
    x = np.asarray(features, dtype=np.float32)
    train, test = stratified_split(y, test_fraction, np.random.default_rng(seed))
    x_train, x_test = x[train], x[test]
    if divide_by is None:
        x_train, x_test = standardize(x_train, x_test)
    else:
        x_train, x_test = x_train / np.float32(divide_by), x_test / np.float32(divide_by)
    return Dataset(
        x_train=x_train,
        y_train=y[train],
        x_test=x_test,
        y_test=y[test],
        num_classes=int(y.max()) + 1,
        name=name,
    )
