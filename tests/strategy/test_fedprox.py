from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import ArrayRecord, ConfigError, ConfigRecord, MissingExtraError
from corolla.strategy import (
    PROXIMAL_MU_KEY,
    FedAvg,
    FedProx,
    proximal_gradient,
    proximal_term,
    torch_proximal_term,
)

from .rounds import run_rounds, train_round
from .test_fedopt import INITIAL, random_rounds


def test_proximal_mu_is_sent_in_the_train_config_without_changing_the_callers() -> None:
    config = ConfigRecord({"lr": 0.1})

    _, _, messages = train_round(FedProx(proximal_mu=0.5), 1, INITIAL, [], config=config)

    assert all(m.content["config"] == config | {PROXIMAL_MU_KEY: 0.5} for m in messages)
    assert PROXIMAL_MU_KEY not in config


def test_aggregation_is_fedavgs() -> None:
    rounds = random_rounds(4)

    assert run_rounds(FedProx(proximal_mu=1.0), INITIAL, rounds) == run_rounds(
        FedAvg(), INITIAL, rounds
    )


@pytest.mark.parametrize("mu", [-0.1, float("nan"), float("inf")])
def test_invalid_mu_is_rejected(mu: float) -> None:
    with pytest.raises(ConfigError):
        FedProx(proximal_mu=mu)


arrays_pairs = st.integers(1, 5).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float64, (n,), elements=st.floats(-10, 10)),
        hnp.arrays(np.float64, (n,), elements=st.floats(-10, 10)),
    )
)


@given(arrays_pairs, st.floats(0.0, 5.0))
def test_the_gradient_is_the_derivative_of_the_term(
    pair: tuple[np.ndarray, np.ndarray], mu: float
) -> None:
    w, g = pair
    local, reference = {"w": w}, {"w": g}

    grad = proximal_gradient(local, reference, mu)["w"]
    eps = 1e-6
    for i in range(w.size):
        up, down = w.copy(), w.copy()
        up[i] += eps
        down[i] -= eps
        numeric = (
            proximal_term({"w": up}, reference, mu) - proximal_term({"w": down}, reference, mu)
        ) / (2 * eps)
        assert grad[i] == pytest.approx(numeric, rel=1e-4, abs=1e-4)
    assert proximal_term(local, reference, mu) >= 0
    assert proximal_term(local, local, mu) == 0


def test_the_term_by_hand_and_dtypes_kept() -> None:
    local = {"w": np.array([1.0, 2.0], np.float32)}
    reference = ArrayRecord({"w": np.array([0.0, 0.0])})

    assert proximal_term(local, reference, 0.5) == pytest.approx(0.25 * 5)
    grad = proximal_gradient(local, reference, 0.5)["w"]
    assert grad.tolist() == [0.5, 1.0] and grad.dtype == np.float32


def test_mismatched_arrays_are_rejected() -> None:
    with pytest.raises(ConfigError):
        proximal_term({"w": np.zeros(2)}, {"v": np.zeros(2)}, 1.0)
    with pytest.raises(ConfigError):
        proximal_gradient({"w": np.zeros(2)}, {"w": np.zeros(3)}, 1.0)


@pytest.mark.torch
def test_the_torch_term_matches_numpy_and_has_the_right_gradient() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 2)
    global_arrays = [p.detach().numpy().copy() + 0.5 for p in model.parameters()]

    term = torch_proximal_term(model.parameters(), global_arrays, 0.2)
    term.backward()

    local = {str(i): p.detach().numpy() for i, p in enumerate(model.parameters())}
    reference = {str(i): g for i, g in enumerate(global_arrays)}
    assert float(term.detach()) == pytest.approx(proximal_term(local, reference, 0.2), rel=1e-5)
    expected = proximal_gradient(local, reference, 0.2)
    for i, p in enumerate(model.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), expected[str(i)], rtol=1e-5)


def test_the_torch_helper_names_the_extra_when_torch_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_torch(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch":
            raise ImportError("no torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)

    with pytest.raises(MissingExtraError, match="torch"):
        torch_proximal_term([], [], 0.1)
