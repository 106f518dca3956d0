"""Central differential privacy: a wrapper that makes an averaging strategy DP-FedAvg.

:class:`CentralDP` wraps a strategy that averages the nodes' updates (FedAvg, FedAvgM,
FedProx, FedAdagrad, FedAdam, FedYogi). Each round, the sampled nodes' updates (a reply's
arrays minus the round's global arrays) are clipped to an L2 norm C, on the server or on
the nodes, summed with equal weights into a :class:`ClippedSum` (mergeable: O(model)
server memory), divided by the number of nodes sampled and noised with Gaussian noise of
standard deviation ``noise_multiplier * C / sampled``: the DP-FedAvg of McMahan et al.
(2018), with its fixed denominator so that a node that drops out changes nothing the
noise does not cover. The wrapped strategy then steps from the noised mean as it would
from its own (FedAdam's moments included), and a :class:`PrivacyAccountant` counts the
round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..core import ArrayRecord, ConfigError, ConfigRecord, Event, MetricRecord, RecordDict
from ..server import Grid, Reduction
from ..strategy import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedYogi,
    RoundPlan,
    StopRun,
    Strategy,
    UniformSelection,
    WeightedAverage,
    WrappedStrategy,
)
from ._accountant import SAMPLINGS, PrivacyAccountant
from ._aggregate import CLIPPINGS, ClippedSum, NoisedSum
from ._clipping import (
    adaptive_clipping_norm,
    add_gaussian_noise,
    check_clipping_norm,
    update_noise_multiplier,
)
from ._mods import CLIPPING_NORM_KEY

__all__ = ["AdaptiveClipping", "CentralDP"]

#: The strategies whose aggregate is the mean of the updates, which CentralDP privatizes.
_WRAPPABLE = (FedAvg, FedAvgM, FedProx, FedAdagrad, FedAdam, FedYogi)
_Wrappable = FedAvg | FedAvgM | FedProx | FedAdagrad | FedAdam | FedYogi
#: The record of the checkpoint that holds CentralDP's own state.
_STATE_KEY = "central-dp"


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdaptiveClipping:
    """Adaptive clipping (Andrew et al., 2021): C follows a quantile of the update norms.

    After each round, C is multiplied by ``exp(-learning_rate * (b - target_quantile))``,
    where b is the fraction of the round's updates that were within C, released with
    Gaussian noise of standard deviation ``clipped_count_stddev`` on their count. Part of
    the round's privacy goes to that count, so the updates get a slightly larger noise
    multiplier (:func:`update_noise_multiplier`); the accountant still counts the
    configured ``noise_multiplier``.

    Parameters
    ----------
    clipped_count_stddev
        The noise on the count of unclipped updates; Andrew et al. suggest the number of
        nodes per round over 20. It must exceed ``noise_multiplier / 2``.
    target_quantile
        The fraction of updates that should fit within C (0.5: the median norm).
    learning_rate
        How fast C moves (0.2 in the paper).

    Raises
    ------
    ConfigError
        If a value is out of range.
    """

    clipped_count_stddev: float
    target_quantile: float = 0.5
    learning_rate: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_quantile <= 1.0:
            raise ConfigError(f"target_quantile must be in [0, 1], got {self.target_quantile}")
        if not 0.0 < self.learning_rate < math.inf:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 < self.clipped_count_stddev < math.inf:
            raise ConfigError(f"clipped_count_stddev must be > 0, got {self.clipped_count_stddev}")


class _DPSampling:
    """The selection policy CentralDP installs in the strategy it wraps: it samples the
    training nodes as the accountant assumes (a fixed number uniformly, or each node with
    the same probability), and remembers how many were available and how many drawn.
    Evaluation nodes are drawn uniformly, as before."""

    def __init__(self, sampling: str, rate: float) -> None:
        self.sampling = sampling
        self.rate = rate
        self.population = 0
        self.sampled = 0
        self._training = False
        self._uniform = UniformSelection()

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        self._training, self.population, self.sampled = True, 0, 0
        try:
            yield
        finally:
            self._training = False

    def select(self, node_ids: Sequence[int], num: int, rng: np.random.Generator) -> list[int]:
        if not self._training:
            return self._uniform.select(node_ids, num, rng)
        ids = list(node_ids)
        if self.sampling == "fixed":
            chosen = self._uniform.select(ids, num, rng)
        else:
            drawn = rng.random(len(ids)) < self.rate
            chosen = [n for n, keep in zip(ids, drawn, strict=True) if keep]
        self.population, self.sampled = len(ids), len(chosen)
        return chosen


@dataclasses.dataclass
class _Round:
    """What the configured round needs at aggregation."""

    denominator: float
    clipping_norm: float
    epsilon: float


class _Released:
    """The noised mean, read by the wrapped strategy as it reads its own aggregate."""

    def __init__(self, count: int, arrays: ArrayRecord, metrics: MetricRecord) -> None:
        self.count = count
        self._arrays = arrays
        self._metrics = metrics

    def arrays(self) -> ArrayRecord:
        return self._arrays

    def take_workspace(self) -> None:
        return None

    def metrics(self) -> MetricRecord:
        return self._metrics


class CentralDP(WrappedStrategy):
    """Central differential privacy around an averaging strategy (DP-FedAvg).

    Guarantees (epsilon, delta) node-level DP for the sequence of global arrays: whatever
    one node's data, the models released over the run change little in distribution.
    The noise is added by the server, so the guarantee holds against whoever sees the
    global arrays (other nodes, the outside world), not against the server itself, which
    sees each update (unless combined with secure aggregation and client-side clipping).
    The training metrics the nodes report are not privatized.

    Parameters
    ----------
    strategy
        The strategy to make private: FedAvg, FedAvgM, FedProx, FedAdagrad, FedAdam or
        FedYogi, with the default (uniform) selection. CentralDP takes over its node
        selection; the strategy's server optimizer steps from the noised mean.
    noise_multiplier
        The noise's standard deviation over C, on the sum of the clipped updates.
    clipping_norm
        C, the bound on each update's L2 norm (the initial one with ``adaptive``).
    clipping
        ``"server"``: the server clips each update. ``"client"``: each node clips its own
        (its ClientApp needs :data:`clipping_mod`), the server sends C in the train
        config (``dp-clipping-norm``) and refuses, as a failed reply, an update longer.
    adaptive
        :class:`AdaptiveClipping` to adapt C round by round; None keeps C fixed.
    delta
        The delta of the guarantee; below 1 / (number of nodes).
    epsilon_budget
        If given, the run stops (cleanly, with a ``run.stop`` event) before a round that
        would make epsilon exceed it; the final arrays are the last ones within budget.
    sampling
        ``"fixed"`` (default): each round trains a fixed number of the available nodes,
        drawn uniformly as the strategy's ``fraction_train`` and ``min_train_nodes`` say;
        accounted with sampling without replacement. ``"poisson"``: each available node
        trains with probability ``fraction_train``, independently (``min_train_nodes``
        does not apply), and the mean's denominator is the expected number; accounted
        with Poisson sampling, which gives a smaller epsilon for the same noise (see
        :class:`PrivacyAccountant`).
    accounting
        ``"rdp"`` (default) or ``"pld"`` (tighter, Poisson sampling only, slower).

    After every round the epsilon spent is recorded in the history (server metrics
    ``privacy-epsilon`` and ``privacy-delta``) and emitted as a ``privacy`` event.

    Raises
    ------
    ConfigError
        If the strategy cannot be wrapped, or a setting is out of range.
    MissingExtraError
        If ``dp-accounting`` is not installed (the ``privacy`` extra).
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        noise_multiplier: float,
        clipping_norm: float,
        clipping: str = "server",
        adaptive: AdaptiveClipping | None = None,
        delta: float,
        epsilon_budget: float | None = None,
        sampling: str = "fixed",
        accounting: str = "rdp",
    ) -> None:
        if not isinstance(strategy, _WRAPPABLE):
            raise ConfigError(
                f"CentralDP wraps strategies that average the updates (FedAvg, FedAvgM, "
                f"FedProx, FedAdagrad, FedAdam, FedYogi), got {type(strategy).__name__}: "
                f"robust strategies keep every update, QFedAvg reweights them by loss and "
                f"SCAFFOLD sends control variates, none of which the noise on a clipped "
                f"mean covers (with secure aggregation, SecAggPlus wraps CentralDP: "
                f"SecAggPlus(CentralDP(FedAvg(), clipping='client', ...)))"
            )
        if clipping not in CLIPPINGS:
            raise ConfigError(f"clipping must be one of {CLIPPINGS}, got {clipping!r}")
        if sampling not in SAMPLINGS:
            raise ConfigError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if not isinstance(strategy.selection, UniformSelection):
            raise ConfigError(
                f"CentralDP accounts for nodes sampled uniformly at random, but the strategy "
                f"selects them with {type(strategy.selection).__name__}: leave its "
                f"selection at the default"
            )
        if epsilon_budget is not None and not 0.0 < epsilon_budget < math.inf:
            raise ConfigError(f"epsilon_budget must be > 0, got {epsilon_budget}")
        self.accountant = PrivacyAccountant(
            noise_multiplier, delta, sampling=sampling, method=accounting
        )
        if adaptive is not None:
            update_noise_multiplier(noise_multiplier, adaptive.clipped_count_stddev)
        #: The wrapped strategy.
        self.strategy: _Wrappable = strategy
        self.noise_multiplier = float(noise_multiplier)
        #: The clipping norm of the next round.
        self.clipping_norm = check_clipping_norm(clipping_norm)
        self.clipping = clipping
        self.adaptive = adaptive
        self.delta = float(delta)
        self.epsilon_budget = epsilon_budget
        self._sampling = _DPSampling(sampling, strategy.fraction_train)
        strategy.selection = self._sampling
        self._round: _Round | None = None
        self._epsilon = 0.0

    @property
    def sampling(self) -> str:
        """How training nodes are sampled: ``"fixed"`` or ``"poisson"``."""
        return self._sampling.sampling

    def epsilon(self) -> float:
        """The epsilon spent so far, at :attr:`delta`."""
        return self.accountant.epsilon()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        """The wrapped strategy's training messages, with C in their config for
        client-side clipping, and a :class:`ClippedSum` for their replies.

        Raises
        ------
        StopRun
            If the round would take epsilon over ``epsilon_budget``.
        ConfigError
            If the wrapped strategy's aggregator is not FedAvg's weighted mean.
        """
        if self.clipping == "client":
            config = config | {CLIPPING_NORM_KEY: self.clipping_norm}
        with self._sampling.training():
            plan = self.strategy.configure_train(server_round, arrays, config, grid)
        if not isinstance(plan.aggregator, WeightedAverage):
            raise ConfigError(
                f"{type(self.strategy).__name__} aggregates with "
                f"{type(plan.aggregator).__name__}, not a mean of updates: CentralDP "
                f"cannot privatize it"
            )
        self._round = None
        population = self._sampling.population
        if population == 0:
            return plan  # no node available: nothing is released
        denominator = float(self._sampling.sampled)
        if self.sampling == "poisson":
            denominator = self._sampling.rate * population
        epsilon = self.accountant.epsilon_after(population, denominator)
        if self.epsilon_budget is not None and epsilon > self.epsilon_budget:
            spent = self._epsilon
            raise StopRun(
                f"privacy budget reached: round {server_round} would take epsilon to "
                f"{epsilon:.4g}, over the budget of {self.epsilon_budget:g}; the run "
                f"ends after round {server_round - 1} having spent epsilon {spent:.4g} "
                f"at delta {self.delta:g}",
                {
                    "privacy_budget": self.epsilon_budget,
                    "epsilon": spent,
                    "delta": self.delta,
                    "epsilon_next_round": epsilon,
                    "last_round": server_round - 1,
                },
            )
        self.accountant.spend(population, denominator)
        self._epsilon = epsilon
        self._round = _Round(denominator, self.clipping_norm, epsilon)
        records = self.strategy
        plan.aggregator = ClippedSum(
            arrays,
            self.clipping_norm,
            clipping=self.clipping,
            arrays_key=records.arrays_key,
            metrics_key=records.metrics_key,
            weight_key=records.weight_key,
        )
        return plan

    def aggregate_train(
        self, server_round: int, reduction: Reduction[Any], arrays: ArrayRecord
    ) -> tuple[ArrayRecord, MetricRecord]:
        """The wrapped strategy's step from the noised mean of the clipped updates; with
        adaptive clipping, C for the next round."""
        aggregator: ClippedSum | NoisedSum = reduction.aggregator
        this = self._round
        if this is None or aggregator.count < max(self.strategy.min_train_replies, 1):
            return arrays, MetricRecord()
        rng = self.strategy.rng
        mean = [total / this.denominator for total in aggregator.sums()]
        if isinstance(aggregator, NoisedSum):
            # The nodes noised their updates before secure aggregation summed them.
            stddev = aggregator.noise_stddev / this.denominator
            noised = mean
        else:
            multiplier = self.noise_multiplier
            if self.adaptive is not None:
                multiplier = update_noise_multiplier(multiplier, self.adaptive.clipped_count_stddev)
            stddev = multiplier * this.clipping_norm / this.denominator
            noised = add_gaussian_noise(mean, stddev, rng)
        released = ArrayRecord(
            (name, (np.asarray(start, np.float64) + step).astype(start.dtype))
            for (name, start), step in zip(arrays.items(), noised, strict=True)
        )
        extra: dict[str, float] = {
            "dp-clipping-norm": this.clipping_norm,
            "dp-noise-stddev": stddev,
        }
        if self.adaptive is not None:
            count = aggregator.unclipped + rng.normal(0.0, self.adaptive.clipped_count_stddev)
            fraction = float(count / this.denominator)
            self.clipping_norm = adaptive_clipping_norm(
                this.clipping_norm,
                fraction,
                self.adaptive.target_quantile,
                self.adaptive.learning_rate,
            )
            extra["dp-unclipped-fraction"] = fraction
        # The wrapped strategy reads the released mean as it reads its own aggregate.
        released_mean: Any = _Released(aggregator.count, released, aggregator.metrics())
        inner: Reduction[Any] = Reduction(released_mean, reduction.errors, reduction.missing)
        new_arrays, metrics = self.strategy.aggregate_train(server_round, inner, arrays)
        return new_arrays, MetricRecord(dict(metrics) | extra)

    def server_metrics(self, server_round: int, grid: Grid) -> MetricRecord:
        """The epsilon spent so far (``privacy-epsilon``) at ``privacy-delta``, also
        emitted as a ``privacy`` event."""
        data = {
            "epsilon": self._epsilon,
            "delta": self.delta,
            "epsilon_budget": self.epsilon_budget,
            "rounds": self.accountant.rounds,
            "noise_multiplier": self.noise_multiplier,
            "clipping_norm": self._round.clipping_norm if self._round else self.clipping_norm,
        }
        grid.emit(Event("privacy", grid.run_id, server_round, data=data))
        inner = self.strategy.server_metrics(server_round, grid)
        return MetricRecord(
            dict(inner) | {"privacy-epsilon": self._epsilon, "privacy-delta": self.delta}
        )

    def state_dict(self) -> RecordDict:
        """The wrapped strategy's state, and the rounds accounted and C."""
        own = ConfigRecord(
            {
                "accounting": self.accountant.to_json(),
                "clipping-norm": self.clipping_norm,
                "epsilon": self._epsilon,
            }
        )
        return RecordDict(dict(self.strategy.state_dict()) | {_STATE_KEY: own})

    def load_state_dict(self, state: RecordDict) -> None:
        """Restore what :meth:`state_dict` returned: a resumed run goes on accounting from
        the rounds its checkpoint had spent.

        Raises
        ------
        ConfigError
            If ``state`` lacks CentralDP's record or holds one of the wrong kind.
        """
        own = state.get(_STATE_KEY)
        if not isinstance(own, ConfigRecord):
            raise ConfigError(f"the checkpoint has no ConfigRecord {_STATE_KEY!r} of CentralDP")
        try:
            accounting = str(own["accounting"])
            clipping_norm = check_clipping_norm(float(own["clipping-norm"]))  # type: ignore[arg-type]
            epsilon = float(own["epsilon"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed CentralDP state in the checkpoint: {exc}") from exc
        self.accountant.load_json(accounting)
        self.strategy.load_state_dict(
            RecordDict((key, record) for key, record in state.items() if key != _STATE_KEY)
        )
        self.clipping_norm = clipping_norm
        self._epsilon = epsilon

    def __repr__(self) -> str:
        return (
            f"CentralDP({self.strategy!r}, noise_multiplier={self.noise_multiplier}, "
            f"clipping_norm={self.clipping_norm}, clipping={self.clipping!r}, "
            f"sampling={self.sampling!r}, delta={self.delta})"
        )
