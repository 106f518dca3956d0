"""The privacy accountant: its epsilon against Opacus's RDP accountant and by hand."""

from __future__ import annotations

import math

import pytest

from corolla.core import ConfigError
from corolla.privacy import PrivacyAccountant
from corolla.privacy._accountant import RDP_ORDERS


def spent(accountant: PrivacyAccountant, rounds: int, population: int, sample: float) -> float:
    for _ in range(rounds):
        accountant.spend(population, sample)
    return accountant.epsilon()


def rdp_epsilon_by_hand(rdp_per_order: list[float], delta: float) -> float:
    """RDP to (epsilon, delta) by Proposition 12 of Canonne, Kamath and Steinke (2020),
    minimized over the orders."""
    return min(
        r + math.log1p(-1 / a) - math.log(delta * a) / (a - 1)
        for a, r in zip(RDP_ORDERS, rdp_per_order, strict=True)
    )


def gaussian_delta(epsilon: float, sigma: float) -> float:
    """The exact delta of a Gaussian mechanism of multiplier ``sigma`` at ``epsilon``
    (Balle and Wang, 2018, Theorem 8)."""

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2))

    return phi(-epsilon * sigma + 1 / (2 * sigma)) - math.exp(epsilon) * phi(
        -epsilon * sigma - 1 / (2 * sigma)
    )


def gaussian_epsilon(sigma: float, delta: float) -> float:
    """The epsilon of a Gaussian mechanism at ``delta``, by bisection on its exact delta."""
    low, high = 0.0, 1000.0
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if gaussian_delta(middle, sigma) > delta else (low, middle)
    return high


@pytest.mark.parametrize(
    ("rate", "sigma", "rounds"), [(0.01, 1.1, 300), (0.05, 0.9, 100), (0.1, 1.0, 50)]
)
def test_epsilon_agrees_with_opacus_rdp_accountant_for_poisson_sampling(
    rate: float, sigma: float, rounds: int
) -> None:
    from opacus.accountants import RDPAccountant

    opacus = RDPAccountant()
    for _ in range(rounds):
        opacus.step(noise_multiplier=sigma, sample_rate=rate)
    expected = opacus.get_epsilon(1e-5, alphas=list(RDP_ORDERS))

    ours = spent(PrivacyAccountant(sigma, 1e-5, sampling="poisson"), rounds, 1000, rate * 1000)

    assert ours == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize("sampling", ["poisson", "fixed"])
def test_epsilon_with_every_node_sampled_is_the_rdp_of_a_gaussian_by_hand(sampling: str) -> None:
    sigma, rounds, delta = 2.0, 20, 1e-6
    # Replace-one moves a sum of updates clipped to C by 2 C: the multiplier halves.
    effective = sigma if sampling == "poisson" else sigma / 2
    rdp = [rounds * a / (2 * effective**2) for a in RDP_ORDERS]

    ours = spent(PrivacyAccountant(sigma, delta, sampling=sampling), rounds, 10, 10)

    assert ours == pytest.approx(rdp_epsilon_by_hand(rdp, delta), rel=1e-9)


def test_pld_epsilon_with_every_node_sampled_is_the_exact_gaussian_epsilon() -> None:
    sigma, rounds, delta = 2.0, 16, 1e-5
    # 16 Gaussians of multiplier 2 compose to one Gaussian of multiplier 2 / sqrt(16).
    exact = gaussian_epsilon(sigma / math.sqrt(rounds), delta)

    pld = spent(PrivacyAccountant(sigma, delta, sampling="poisson", method="pld"), rounds, 8, 8)
    rdp = spent(PrivacyAccountant(sigma, delta, sampling="poisson"), rounds, 8, 8)

    assert pld == pytest.approx(exact, rel=1e-2)
    assert rdp >= exact


def test_epsilon_grows_with_rounds_and_sampling_and_shrinks_with_noise() -> None:
    def epsilon(sigma: float, rounds: int, sample: int) -> float:
        return spent(PrivacyAccountant(sigma, 1e-5), rounds, 100, sample)

    assert epsilon(1.0, 10, 10) < epsilon(1.0, 20, 10)
    assert epsilon(1.0, 10, 10) < epsilon(1.0, 10, 20)
    assert epsilon(2.0, 10, 10) < epsilon(1.0, 10, 10)
    assert PrivacyAccountant(1.0, 1e-5).epsilon() == 0.0


def test_epsilon_after_a_round_is_what_spending_it_gives() -> None:
    accountant = PrivacyAccountant(1.0, 1e-5)
    spent(accountant, 3, 50, 5)

    ahead = accountant.epsilon_after(40, 4)
    accountant.spend(40, 4)

    assert accountant.epsilon() == ahead
    assert accountant.rounds == 4


def test_the_rounds_spent_survive_a_round_trip_through_json() -> None:
    accountant = PrivacyAccountant(1.0, 1e-5)
    spent(accountant, 3, 50, 5)
    accountant.spend(40, 4)

    restored = PrivacyAccountant(1.0, 1e-5)
    restored.load_json(accountant.to_json())

    assert restored.rounds == 4
    assert restored.epsilon() == accountant.epsilon()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"noise_multiplier": 0.0}, "noise multiplier must be > 0"),
        ({"delta": 1.0}, r"delta must be in \(0, 1\)"),
        ({"sampling": "shuffle"}, "sampling must be one of"),
        ({"method": "moments"}, "accounting method must be one of"),
        ({"method": "pld"}, "PLD accounting does not cover sampling a fixed number"),
    ],
)
def test_bad_settings_are_refused_by_name(options: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"noise_multiplier": 1.0, "delta": 1e-5} | options

    with pytest.raises(ConfigError, match=message):
        PrivacyAccountant(**settings)  # type: ignore[arg-type]


def test_a_round_must_sample_between_one_node_and_all() -> None:
    accountant = PrivacyAccountant(1.0, 1e-5)

    with pytest.raises(ConfigError, match="between 1 and the 10 available nodes"):
        accountant.spend(10, 11)
    with pytest.raises(ConfigError, match="between 1 and the 10 available nodes"):
        accountant.epsilon_after(10, 0)
    with pytest.raises(ConfigError, match="malformed privacy accounting state"):
        accountant.load_json("[[10, 20, 1]]")
