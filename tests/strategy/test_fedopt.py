from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from corolla.core import ArrayRecord, ConfigError, ConfigRecord, MetricRecord, RecordDict
from corolla.strategy import FedAdagrad, FedAdam, FedAvg, FedAvgM, FedYogi

from .rounds import Reply, run_rounds, train_round

INITIAL = ArrayRecord({"w": np.array([[0.5, -1.0], [2.0, 0.0]]), "b": np.array([0.25, 1.0])})
OPTIMIZERS = [FedAvgM, FedAdagrad, FedAdam, FedYogi]
#: Each optimizer with options that give it state, and the non-default conventions.
STATEFUL: list[tuple[type, dict[str, Any]]] = [
    (FedAvgM, {"server_momentum": 0.9}),
    (FedAdagrad, {}),
    (FedAdagrad, {"beta_1": 0.9}),
    (FedAdam, {}),
    (FedAdam, {"bias_correction": False}),
    (FedYogi, {}),
]


def reply(arrays: ArrayRecord, weight: int, **metrics: Any) -> RecordDict:
    return RecordDict(
        {"arrays": arrays, "metrics": MetricRecord({"num-examples": weight, **metrics})}
    )


def random_rounds(seed: int, like: ArrayRecord = INITIAL, num_rounds: int = 3) -> list[list[Reply]]:
    rng = np.random.default_rng(seed)
    return [
        [
            (
                node,
                reply(
                    ArrayRecord(
                        (n, (a + rng.normal(size=a.shape)).astype(a.dtype)) for n, a in like.items()
                    ),
                    int(rng.integers(1, 100)),
                ),
            )
            for node in range(1, 5)
        ]
        for _ in range(num_rounds)
    ]


def test_fedavgm_with_the_defaults_is_fedavg() -> None:
    rounds = random_rounds(0)

    for got, expected in zip(
        run_rounds(FedAvgM(), INITIAL, rounds), run_rounds(FedAvg(), INITIAL, rounds), strict=True
    ):
        for name in INITIAL:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-12)


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_a_zero_pseudo_gradient_keeps_the_arrays(cls: type) -> None:
    echo = [[(n, reply(INITIAL, n)) for n in (1, 2, 3)]] * 3

    for arrays in run_rounds(cls(), INITIAL, echo):
        assert arrays == INITIAL


@pytest.mark.parametrize(("cls", "options"), STATEFUL)
def test_the_state_saved_after_two_rounds_resumes_the_third(
    cls: type, options: dict[str, Any]
) -> None:
    rounds = random_rounds(1)
    straight = cls(**options)
    expected = run_rounds(straight, INITIAL, rounds)[-1]

    first = cls(**options)
    after_two = run_rounds(first, INITIAL, rounds[:2])[-1]
    state = first.state_dict()
    resumed = cls(**options)
    resumed.load_state_dict(state)
    got, _, _ = train_round(resumed, 3, after_two, rounds[2])

    assert len(state) > 0 and all(isinstance(r, ArrayRecord) for r in state.values())
    assert got == expected
    assert resumed.state_dict() == straight.state_dict()


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_the_state_is_empty_before_the_first_round(cls: type) -> None:
    assert cls().state_dict() == RecordDict()


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_unknown_state_is_rejected(cls: type) -> None:
    with pytest.raises(ConfigError, match="unexpected state"):
        cls().load_state_dict(RecordDict({"nope": ArrayRecord({"w": np.zeros(1)})}))


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_a_round_without_replies_keeps_the_arrays_and_the_state(cls: type) -> None:
    strategy = cls(**({"server_momentum": 0.5} if cls is FedAvgM else {}))
    run_rounds(strategy, INITIAL, random_rounds(2, num_rounds=1))
    state = strategy.state_dict()

    arrays, metrics, _ = train_round(strategy, 2, INITIAL, [])

    assert arrays == INITIAL and metrics == MetricRecord()
    assert strategy.state_dict() == state


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_integer_arrays_take_the_average_and_dtypes_are_kept(cls: type) -> None:
    initial = ArrayRecord({"w": np.ones(3, np.float32), "steps": np.array([10], np.int64)})
    replies = [
        (1, reply(ArrayRecord({"w": np.full(3, 2, np.float32), "steps": [12]}), 1)),
        (2, reply(ArrayRecord({"w": np.full(3, 4, np.float32), "steps": [14]}), 1)),
    ]

    arrays, _, _ = train_round(cls(), 1, initial, replies)

    assert arrays["w"].dtype == np.float32
    assert arrays["steps"].tolist() == [13]
    assert np.all(arrays["w"] > 1)  # stepped towards the average


def test_fedadam_first_round_by_hand() -> None:
    replies = [(1, reply(ArrayRecord({"w": [1.0], "b": [0.0]}), 1))]
    initial = ArrayRecord({"w": [0.0], "b": [0.0]})

    arrays, _, _ = train_round(FedAdam(eta=0.1, tau=1e-3), 1, initial, replies)

    # delta = 1: m = 0.1, v = 0.01, rate = 0.1 * sqrt(1 - 0.99^2) / (1 - 0.9^2)
    rate = 0.1 * np.sqrt(1 - 0.99**2) / (1 - 0.9**2)
    assert arrays["w"][0] == pytest.approx(rate * 0.1 / (0.1 + 1e-3), rel=1e-12)
    assert arrays["b"][0] == 0.0


def test_fedadam_without_bias_correction_first_round_by_hand() -> None:
    replies = [(1, reply(ArrayRecord({"w": [1.0]}), 1))]
    initial = ArrayRecord({"w": [0.0]})

    arrays, _, _ = train_round(
        FedAdam(eta=0.1, tau=1e-3, bias_correction=False), 1, initial, replies
    )

    # delta = 1: m = 0.1, v = 0.01; the rate is eta itself
    assert arrays["w"][0] == pytest.approx(0.1 * 0.1 / (0.1 + 1e-3), rel=1e-12)


def test_fedadams_bias_correction_scales_the_first_step() -> None:
    rounds = random_rounds(4)

    corrected = run_rounds(FedAdam(), INITIAL, rounds[:1])[0]
    plain = run_rounds(FedAdam(bias_correction=False), INITIAL, rounds[:1])[0]

    # round 1: rate = eta * sqrt(1 - 0.99^2) / (1 - 0.9^2) is about 0.74 eta
    scale = np.sqrt(1 - 0.99**2) / (1 - 0.9**2)
    for name in INITIAL:
        np.testing.assert_allclose(
            corrected[name] - INITIAL[name], scale * (plain[name] - INITIAL[name]), rtol=1e-12
        )


def test_fedadagrad_with_first_moment_two_rounds_by_hand() -> None:
    initial = ArrayRecord({"w": [0.0]})
    strategy = FedAdagrad(eta=0.1, beta_1=0.9, tau=0.0)

    after1, _, _ = train_round(strategy, 1, initial, [(1, reply(ArrayRecord({"w": [1.0]}), 1))])
    after2, _, _ = train_round(strategy, 2, after1, [(1, reply(ArrayRecord({"w": [1.1]}), 1))])

    # round 1: delta = 1, m = 0.1, v = 1: x = 0.01
    # round 2: delta = 1.09, m = 0.09 + 0.109 = 0.199, v = 1 + 1.09^2
    assert after1["w"][0] == pytest.approx(0.01, rel=1e-12)
    expected = 0.01 + 0.1 * 0.199 / np.sqrt(1 + 1.09**2)
    assert after2["w"][0] == pytest.approx(expected, rel=1e-12)
    assert set(strategy.state_dict()) == {"m", "v"}


def test_fedadagrad_keeps_a_first_moment_only_when_asked() -> None:
    rounds = random_rounds(5, num_rounds=1)
    plain, with_moment = FedAdagrad(), FedAdagrad(beta_1=0.9)

    run_rounds(plain, INITIAL, rounds)
    run_rounds(with_moment, INITIAL, rounds)

    assert set(plain.state_dict()) == {"v"}
    assert set(with_moment.state_dict()) == {"m", "v"}
    with pytest.raises(ConfigError, match="unexpected state"):
        FedAdagrad().load_state_dict(with_moment.state_dict())
    FedAdagrad(beta_1=0.9).load_state_dict(plain.state_dict())  # m starts from zero


def test_fedavgm_momentum_accumulates() -> None:
    initial = ArrayRecord({"w": [0.0]})
    strategy = FedAvgM(server_learning_rate=1.0, server_momentum=0.5)

    after1, _, _ = train_round(strategy, 1, initial, [(1, reply(ArrayRecord({"w": [1.0]}), 1))])
    after2, _, _ = train_round(strategy, 2, after1, [(1, reply(ArrayRecord({"w": [2.0]}), 1))])

    # v1 = -1, x1 = 1; v2 = 0.5 * -1 + (1 - 2) = -1.5, x2 = 2.5
    assert (after1["w"][0], after2["w"][0]) == (1.0, 2.5)


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_sampling_and_messages_are_fedavgs(cls: type) -> None:
    config = ConfigRecord({"lr": 0.1})

    _, _, messages = train_round(
        cls(fraction_train=0.5, seed=3), 1, INITIAL, [], num_nodes=10, config=config
    )

    assert len(messages) == 5
    assert all(m.content["arrays"] == INITIAL for m in messages)
    assert all(m.content["config"] == config for m in messages)


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (FedAvgM, {"server_momentum": -0.1}),
        (FedAvgM, {"server_learning_rate": -1.0}),
        (FedAdam, {"beta_1": 1.0}),
        (FedAdam, {"beta_2": -0.1}),
        (FedYogi, {"tau": -1.0}),
        (FedAdagrad, {"eta": float("nan")}),
        (FedAdagrad, {"beta_1": 1.0}),
        (FedAdagrad, {"beta_1": -0.1}),
        (FedAdam, {"fraction_train": 0.0}),
    ],
)
def test_invalid_options_are_rejected(cls: type, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        cls(**options)


def test_flowers_defaults() -> None:
    adam, yogi, adagrad = FedAdam(), FedYogi(), FedAdagrad()

    assert (adam.eta, adam.eta_l, adam.beta_1, adam.beta_2, adam.tau) == (0.1, 0.1, 0.9, 0.99, 1e-3)
    assert (yogi.eta, yogi.eta_l, yogi.beta_1, yogi.beta_2, yogi.tau) == (
        1e-2,
        0.0316,
        0.9,
        0.99,
        1e-3,
    )
    assert (adagrad.eta, adagrad.eta_l, adagrad.beta_1, adagrad.tau) == (0.1, 0.1, 0.0, 1e-3)
    assert adam.bias_correction is True
