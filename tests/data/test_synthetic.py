from __future__ import annotations

import numpy as np
import pytest

from corolla.core._errors import ConfigError
from corolla.data import Dataset, synthetic_federated


def test_device_sizes_follow_the_fedprox_formula() -> None:
    expected = np.random.default_rng(11).lognormal(4.0, 2.0, 30).astype(np.int64) + 50

    devices = synthetic_federated(1.0, 1.0, seed=11)

    assert len(devices) == 30
    for device, n in zip(devices, expected, strict=True):
        assert device.y_train.size == int(0.9 * n)
        assert device.y_train.size + device.y_test.size == n


def test_devices_hold_float32_features_and_labels_in_range() -> None:
    devices = synthetic_federated(0.5, 0.5, num_devices=12, dim=20, num_classes=5, seed=2)

    for k, device in enumerate(devices):
        assert isinstance(device, Dataset)
        assert device.name == f"synthetic_0.5_0.5/{k}"
        assert device.num_classes == 5
        assert device.x_train.dtype == device.x_test.dtype == np.float32
        assert device.x_train.shape[1] == 20
        labels = np.concatenate([device.y_train, device.y_test])
        assert labels.dtype == np.int64
        assert labels.min() >= 0 and labels.max() < 5


def test_same_seed_gives_identical_data() -> None:
    first = synthetic_federated(1.0, 1.0, num_devices=5, seed=3)
    second = synthetic_federated(1.0, 1.0, num_devices=5, seed=3)

    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.x_train, b.x_train)
        np.testing.assert_array_equal(a.y_train, b.y_train)
        np.testing.assert_array_equal(a.x_test, b.x_test)
        np.testing.assert_array_equal(a.y_test, b.y_test)


@pytest.mark.parametrize("other", [{"beta": 0.0}, {"beta": 2.0}, {"seed": 4}])
def test_different_beta_or_seed_change_the_data(other: dict[str, float]) -> None:
    args: dict[str, float] = {"alpha": 1.0, "beta": 1.0, "seed": 3}
    base = synthetic_federated(**args, num_devices=5)  # type: ignore[arg-type]
    changed = synthetic_federated(**{**args, **other}, num_devices=5)  # type: ignore[arg-type]

    assert any(
        not np.array_equal(a.x_train, b.x_train) or not np.array_equal(a.y_train, b.y_train)
        for a, b in zip(base, changed, strict=True)
    )


@pytest.mark.parametrize("alpha", [0.0, 0.5, 10.0])
def test_alpha_shifts_every_logit_equally_so_the_data_do_not_change(alpha: float) -> None:
    # As in the FedProx generator: u_k is added to all of W_k and b_k, a common logit shift.
    base = synthetic_federated(1.0, 1.0, num_devices=5, seed=3)
    changed = synthetic_federated(alpha, 1.0, num_devices=5, seed=3)

    for a, b in zip(base, changed, strict=True):
        np.testing.assert_array_equal(a.x_train, b.x_train)
        assert np.mean(a.y_train == b.y_train) > 0.999


def test_beta_is_the_standard_deviation_of_the_feature_mean() -> None:
    # Following the FedProx code, B_k ~ Normal(0, beta) with beta as the scale; each device's
    # average feature is B_k plus noise of variance 1/dim, so its spread across devices is beta.
    devices = synthetic_federated(0.0, 4.0, num_devices=200, seed=5)

    device_means = [np.concatenate([d.x_train, d.x_test]).mean() for d in devices]

    assert 3.4 < np.std(device_means) < 4.6


def test_iid_devices_share_one_model_and_input_distribution() -> None:
    seed, dim, classes = 8, 60, 10
    draws = np.random.default_rng(seed)
    draws.lognormal(4.0, 2.0, 10)
    w = draws.normal(0.0, 1.0, (dim, classes))
    b = draws.normal(0.0, 1.0, classes)

    devices = synthetic_federated(1.0, 1.0, num_devices=10, seed=seed, iid=True)

    x = np.concatenate([d.x_train for d in devices]).astype(np.float64)
    y = np.concatenate([d.y_train for d in devices])
    # float32 storage can flip a label that sat right on a decision boundary.
    assert np.mean(np.argmax(x @ w + b, axis=1) == y) > 0.99
    assert np.abs(x.mean(axis=0)).max() < 0.2
    assert devices[0].name == "synthetic_iid/0"


def test_iid_ignores_alpha_and_beta() -> None:
    first = synthetic_federated(0.0, 0.0, num_devices=3, iid=True)
    second = synthetic_federated(5.0, 7.0, num_devices=3, iid=True)

    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.x_train, b.x_train)
        np.testing.assert_array_equal(a.y_test, b.y_test)


def test_test_fraction_sets_each_devices_split() -> None:
    devices = synthetic_federated(1.0, 1.0, num_devices=4, seed=1, test_fraction=0.5)

    for device in devices:
        n = device.y_train.size + device.y_test.size
        assert device.y_train.size == int(0.5 * n)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -1.0}, "alpha"),
        ({"beta": float("nan")}, "beta"),
        ({"num_devices": 0}, "num_devices"),
        ({"dim": 0}, "dim"),
        ({"num_classes": 1}, "num_classes"),
        ({"seed": -1}, "seed"),
        ({"test_fraction": 1.0}, "test_fraction"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"alpha": 1.0, "beta": 1.0}
    args.update(kwargs)

    with pytest.raises(ConfigError, match=message):
        synthetic_federated(**args)  # type: ignore[arg-type]
