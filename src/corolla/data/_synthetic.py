"""Synthetic(alpha, beta) of Li et al., "Federated Optimization in Heterogeneous Networks"
(FedProx, MLSys 2020): one softmax-regression task per device, with tunable heterogeneity.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ._checks import check_fraction, check_int, check_non_negative
from ._dataset import Dataset

__all__ = ["synthetic_federated"]

# Sigma_jj = j ** -1.2 for j = 1 .. dim, as in the FedProx generator.
_COVARIANCE_DECAY = 1.2


def synthetic_federated(
    alpha: float,
    beta: float,
    num_devices: int = 30,
    dim: int = 60,
    num_classes: int = 10,
    seed: int = 0,
    iid: bool = False,
    *,
    test_fraction: float = 0.1,
) -> list[Dataset]:
    """Generate the per-device data of Synthetic(alpha, beta), or of Synthetic-IID.

    This follows the generator published with FedProx (``litian96/FedProx``,
    ``data/synthetic_*/generate_synthetic.py`` and ``data/synthetic_iid/generate_iid.py``),
    with a ``numpy.random.Generator`` seeded by ``seed`` in place of the global NumPy state.
    Draws happen in this order, so the data depend only on the arguments:

    1. Device sizes ``n_k = int(lognormal(mean=4, sigma=2)) + 50``, for all devices.
    2. Priors. Non-IID (``iid=False``): ``u_k ~ Normal(0, alpha)`` for all devices, then
       ``B_k ~ Normal(0, beta)`` for all devices, then ``v_k ~ Normal(B_k, 1)`` elementwise
       (length ``dim``) for all devices. IID (``iid=True``, the paper's Synthetic-IID):
       ``alpha`` and ``beta`` are unused; one ``W`` (``dim x num_classes``) and one ``b``
       (``num_classes``), elementwise ``Normal(0, 1)``, are shared by all devices, and
       ``v_k = 0`` for every device, so every device draws from the same distribution.
    3. Then device by device:

       - non-IID only: ``W_k`` and ``b_k`` elementwise ``Normal(u_k, 1)`` (the mean of
         ``b_k`` is the same ``u_k`` as for ``W_k``, as in the original code);
       - ``n_k`` inputs ``x ~ Normal(v_k, Sigma)`` with ``Sigma`` diagonal,
         ``Sigma_jj = j ** -1.2`` (``j = 1 .. dim``), and labels
         ``y = argmax(softmax(x @ W_k + b_k))``;
       - a shuffle of the device's samples: the first ``int((1 - test_fraction) * n_k)``
         are for training (90/10 by default, as in FedProx), the rest for testing.

    On variances: the paper writes ``u_k ~ N(0, alpha)``, ``B_k ~ N(0, beta)``; the original
    code passes ``alpha`` and ``beta`` to ``numpy.random.normal`` as the *scale*, i.e. as
    standard deviations. This function does the same: ``u_k`` has standard deviation
    ``alpha`` (variance ``alpha ** 2``) and ``B_k`` standard deviation ``beta``. For the
    published settings (0, 0), (1, 1) the two readings agree; for (0.5, 0.5) this matches the
    code, not a variance of 0.5. All other normals have unit variance, and ``Sigma`` above is a
    covariance (variance ``j ** -1.2``, standard deviation ``j ** -0.6``).

    A consequence of the original construction, kept here for fidelity: ``u_k`` is added to
    every entry of ``W_k`` and ``b_k``, which adds the same amount, ``u_k * (sum(x) + 1)``,
    to every class's logit, so the argmax, and hence the data, does not depend on ``alpha``.
    For a fixed ``seed``, changing ``alpha`` draws the same stream and gives the same data
    (up to floating-point ties). Models still differ between devices, because every ``W_k``
    and ``b_k`` is drawn independently; ``beta`` and ``iid`` are what change the data.

    Parameters
    ----------
    alpha
        Standard deviation of the per-device model mean ``u_k``; see above for why it does
        not change the labels.
    beta
        Standard deviation of the per-device feature mean ``B_k`` (how much inputs differ).
    num_devices
        Number of devices.
    dim
        Number of features.
    num_classes
        Number of classes.
    seed
        Seed of the generator; the same arguments always give the same data.
    iid
        Generate Synthetic-IID instead (``alpha`` and ``beta`` are then ignored).
    test_fraction
        Share of each device's samples held out for testing.

    Returns
    -------
    list of Dataset
        One ``Dataset`` per device, named ``synthetic_<alpha>_<beta>/<k>`` (or
        ``synthetic_iid/<k>``), with ``float32`` features and ``int64`` labels.

    Raises
    ------
    ConfigError
        If ``alpha`` or ``beta`` is negative or not finite, ``num_devices``, ``dim`` or
        ``seed`` is not a positive (``seed``: non-negative) integer, ``num_classes < 2``, or
        ``test_fraction`` is not strictly between 0 and 1.
    """
    alpha = check_non_negative("alpha", alpha)
    beta = check_non_negative("beta", beta)
    num_devices = check_int("num_devices", num_devices, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    test_fraction = check_fraction("test_fraction", test_fraction)
    rng = np.random.default_rng(seed)

    sizes = rng.lognormal(mean=4.0, sigma=2.0, size=num_devices).astype(np.int64) + 50
    x_std = np.arange(1, dim + 1, dtype=np.float64) ** (-_COVARIANCE_DECAY / 2)
    if iid:
        name = "synthetic_iid"
        shared_w = rng.normal(0.0, 1.0, size=(dim, num_classes))
        shared_b = rng.normal(0.0, 1.0, size=num_classes)
        model_mean = np.zeros(num_devices)
        x_mean = np.zeros((num_devices, dim))
    else:
        name = f"synthetic_{alpha:g}_{beta:g}"
        model_mean = rng.normal(0.0, alpha, size=num_devices)
        feature_mean = rng.normal(0.0, beta, size=num_devices)
        x_mean = rng.normal(feature_mean[:, None], 1.0, size=(num_devices, dim))

    devices = []
    for k in range(num_devices):
        if iid:
            w, b = shared_w, shared_b
        else:
            w = rng.normal(model_mean[k], 1.0, size=(dim, num_classes))
            b = rng.normal(model_mean[k], 1.0, size=num_classes)
        n = int(sizes[k])
        x = x_mean[k] + rng.standard_normal((n, dim)) * x_std
        # softmax is monotone, so its argmax is the argmax of the logits.
        y = np.argmax(x @ w + b, axis=1).astype(np.int64)
        devices.append(_split_device(f"{name}/{k}", x, y, num_classes, test_fraction, rng))
    return devices


def _split_device(
    name: str,
    x: NDArray[np.float64],
    y: NDArray[np.int64],
    num_classes: int,
    test_fraction: float,
    rng: np.random.Generator,
) -> Dataset:
    n = y.size
    n_train = min(max(int((1.0 - test_fraction) * n), 1), n - 1)
    order = rng.permutation(n)
    train, test = order[:n_train], order[n_train:]
    return Dataset(
        x_train=x[train].astype(np.float32),
        y_train=y[train],
        x_test=x[test].astype(np.float32),
        y_test=y[test],
        num_classes=num_classes,
        name=name,
    )
