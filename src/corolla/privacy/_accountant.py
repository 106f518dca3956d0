"""The privacy accountant: the (epsilon, delta) a run has spent, from ``dp-accounting``.

Each round of central DP is one sampled Gaussian mechanism: a sample of the nodes is
drawn, and the sum of their clipped updates is released with Gaussian noise. The
accountant composes the rounds with Google's ``dp-accounting`` library, by Rényi DP (the
default) or by privacy loss distributions (PLD, tighter), and converts the total to an
epsilon at the configured delta.

The guarantee is node-level (user-level) DP: two federations are neighbours when one
node's whole data differs, so the bound holds whatever one node contributes over the
run. How neighbours differ follows from how nodes are sampled:

- ``"fixed"``: a fixed number of the available nodes, drawn uniformly without replacement,
  which is how Corolla's strategies sample (:class:`~corolla.strategy.UniformSelection`).
  The number of nodes is public and a neighbour replaces one node's data
  (``SampledWithoutReplacementDpEvent``, replace-one: Wang, Balle and Kasiviswanathan,
  2019). Replacing one clipped update by another moves the sum by up to 2 C, so the
  mechanism counted is a Gaussian of multiplier ``noise_multiplier / 2``. Only RDP
  accounts this sampling.
- ``"poisson"``: every node independently with the same probability, as
  :class:`~corolla.privacy.PoissonSelection` samples; a neighbour adds or removes a node,
  which moves the sum by up to C (``PoissonSampledDpEvent``, add-or-remove: the analysis of
  DP-SGD and of DP-FedAvg, McMahan et al. 2018).
"""

from __future__ import annotations

import collections
import json
import math
from typing import Any

from ..core import ConfigError, MissingExtraError

__all__ = ["SAMPLINGS", "PrivacyAccountant", "dp_accounting_module"]

#: How the nodes of a round are sampled (see the module's description).
SAMPLINGS = ("fixed", "poisson")
#: How rounds are composed: Rényi DP or privacy loss distributions.
METHODS = ("rdp", "pld")

#: Rényi orders: those of Opacus's RDP accountant from 2 on (its fractional orders below 2
#: make dp-accounting's series for Poisson sampling fail to converge at small rates, and
#: are the best order only for epsilons far above any useful budget).
RDP_ORDERS: tuple[float, ...] = tuple(1 + x / 10.0 for x in range(10, 100)) + tuple(
    float(x) for x in range(12, 64)
)


def dp_accounting_module() -> Any:
    try:
        import dp_accounting
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise MissingExtraError("dp-accounting", "privacy") from exc
    return dp_accounting


class PrivacyAccountant:
    """The privacy a run spent, round by round, of a Gaussian mechanism on sampled nodes.

    Parameters
    ----------
    noise_multiplier
        The noise's standard deviation over the clipping norm C (on the sum of updates).
    delta
        The delta at which epsilon is reported; below 1 / (number of nodes).
    sampling
        ``"fixed"`` (Corolla's sampling of a fixed number of nodes) or ``"poisson"``; see
        the module's description.
    method
        ``"rdp"`` (default) or ``"pld"`` (tighter; Poisson sampling only).

    Raises
    ------
    ConfigError
        If a value is out of range, or ``method`` cannot account ``sampling``.
    MissingExtraError
        If ``dp-accounting`` is not installed (the ``privacy`` extra).
    """

    def __init__(
        self,
        noise_multiplier: float,
        delta: float,
        *,
        sampling: str = "fixed",
        method: str = "rdp",
    ) -> None:
        if not 0.0 < noise_multiplier < math.inf:
            raise ConfigError(f"noise multiplier must be > 0, got {noise_multiplier}")
        if not 0.0 < delta < 1.0:
            raise ConfigError(f"delta must be in (0, 1), got {delta}")
        if sampling not in SAMPLINGS:
            raise ConfigError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if method not in METHODS:
            raise ConfigError(f"accounting method must be one of {METHODS}, got {method!r}")
        if method == "pld" and sampling == "fixed":
            raise ConfigError(
                "PLD accounting does not cover sampling a fixed number of nodes; use "
                "method='rdp', or sampling='poisson' with PoissonSelection"
            )
        dp_accounting_module()
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)
        self.sampling = sampling
        self.method = method
        # (population, sample size) -> number of rounds: rounds of equal sampling compose
        # as one self-composed event, so the cost of an epsilon does not grow with rounds.
        self._rounds: collections.Counter[tuple[int, float]] = collections.Counter()
        # The RDP of one round of each sampling met: composing is then a weighted sum.
        self._rdp: dict[tuple[int, float], Any] = {}

    @property
    def rounds(self) -> int:
        """The number of rounds spent."""
        return sum(self._rounds.values())

    def spend(self, population: int, sample_size: float) -> None:
        """Count one round that sampled ``sample_size`` of ``population`` nodes (the
        expected number, ``rate * population``, for Poisson sampling).

        Raises
        ------
        ConfigError
            If the sample is empty or larger than the population.
        """
        self._rounds[_check_round(population, sample_size)] += 1

    def epsilon(self) -> float:
        """The epsilon spent so far at :attr:`delta` (0 before any round)."""
        return self._epsilon(self._rounds)

    def epsilon_after(self, population: int, sample_size: float) -> float:
        """The epsilon spent if one more round sampled ``sample_size`` of ``population``.

        Raises
        ------
        ConfigError
            If the sample is empty or larger than the population.
        """
        rounds = self._rounds.copy()
        rounds[_check_round(population, sample_size)] += 1
        return self._epsilon(rounds)

    def _epsilon(self, rounds: collections.Counter[tuple[int, float]]) -> float:
        if not rounds:
            return 0.0
        dp = dp_accounting_module()
        if self.method == "rdp":
            total = sum(count * self._round_rdp(key) for key, count in rounds.items())
            epsilon, _ = dp.rdp.rdp_privacy_accountant.compute_epsilon(
                RDP_ORDERS, total, self.delta
            )
            return float(epsilon)
        accountant = dp.pld.PLDAccountant(neighboring_relation=self._relation())
        accountant.compose(dp.ComposedDpEvent([self._event(*key, n) for key, n in rounds.items()]))
        return float(accountant.get_epsilon(self.delta))

    def _round_rdp(self, key: tuple[int, float]) -> Any:
        """The RDP curve (at :data:`RDP_ORDERS`) of one round sampling as ``key`` says."""
        if key not in self._rdp:
            dp = dp_accounting_module()
            accountant = dp.rdp.RdpAccountant(
                orders=list(RDP_ORDERS), neighboring_relation=self._relation()
            )
            accountant.compose(self._event(*key, 1))
            self._rdp[key] = accountant.rdp
        return self._rdp[key]

    def _relation(self) -> Any:
        dp = dp_accounting_module()
        if self.sampling == "fixed":
            return dp.NeighboringRelation.REPLACE_ONE
        return dp.NeighboringRelation.ADD_OR_REMOVE_ONE

    def _event(self, population: int, sample_size: float, count: int) -> Any:
        dp = dp_accounting_module()
        if self.sampling == "fixed":
            # Replace-one moves a sum of updates clipped to C by up to 2 C.
            gaussian = dp.GaussianDpEvent(self.noise_multiplier / 2.0)
            event = dp.SampledWithoutReplacementDpEvent(population, int(sample_size), gaussian)
        else:
            gaussian = dp.GaussianDpEvent(self.noise_multiplier)
            event = dp.PoissonSampledDpEvent(min(sample_size / population, 1.0), gaussian)
        return dp.SelfComposedDpEvent(event, count)

    def to_json(self) -> str:
        """The rounds spent, for a checkpoint (:meth:`load_json` reads it back)."""
        return json.dumps([[n, m, c] for (n, m), c in sorted(self._rounds.items())])

    def load_json(self, text: str) -> None:
        """Replace the rounds spent by those of :meth:`to_json`.

        Raises
        ------
        ConfigError
            If ``text`` is not what :meth:`to_json` writes.
        """
        try:
            items = json.loads(text)
            rounds: collections.Counter[tuple[int, float]] = collections.Counter()
            for population, sample_size, count in items:
                if not isinstance(count, int) or count < 1:
                    raise ValueError(f"round count {count!r}")
                rounds[_check_round(population, sample_size)] += count
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"malformed privacy accounting state {text[:80]!r}: {exc}") from exc
        self._rounds = rounds

    def __repr__(self) -> str:
        return (
            f"PrivacyAccountant(noise_multiplier={self.noise_multiplier}, delta={self.delta}, "
            f"sampling={self.sampling!r}, method={self.method!r}, rounds={self.rounds})"
        )


def _check_round(population: int, sample_size: float) -> tuple[int, float]:
    if not isinstance(population, int) or isinstance(population, bool) or population < 1:
        raise ConfigError(f"the population of nodes must be an int >= 1, got {population!r}")
    if not 0 < sample_size <= population:
        raise ConfigError(
            f"a round samples between 1 and the {population} available nodes, got {sample_size!r}"
        )
    return population, sample_size
