"""Server-side optimization: FedAvgM (Hsu et al., 2019) and FedAdagrad, FedAdam, FedYogi
(Reddi et al., 2021, "Adaptive Federated Optimization").

Each strategy is FedAvg's round (sampling, messages and the streaming weighted average,
O(model) server memory) followed by one optimizer step on the pseudo-gradient
``delta = average - global``. The averaging is done by a :class:`FedAvg` the strategy holds;
the step is a pure kernel of :mod:`._server_opt`. Only floating-point arrays are stepped;
other arrays (counters, integer buffers) take the plain average.

The optimizer state (momentum, moments) lives in the strategy object, in float64; it is
exported and restored with :meth:`state_dict` / :meth:`load_state_dict`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import ArrayRecord, ConfigError, ConfigRecord, MetricRecord, RecordDict
from ..server import Grid, Reduction
from ._fedavg import FedAvg
from ._server_opt import Arrays, adagrad_step, adam_step, momentum_step, yogi_step
from ._strategy import RoundPlan, Strategy

__all__ = ["FedAdagrad", "FedAdam", "FedAvgM", "FedYogi"]


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    if not value >= low or (high is not None and not value < high):
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be {bound}, got {value}")


class _ServerOptStrategy(Strategy):
    """FedAvg followed by a server optimizer step; subclasses define the step."""

    #: Names of the state records (each an ArrayRecord keyed like the global arrays).
    _STATE: tuple[str, ...] = ()

    def __init__(self, options: dict[str, Any]) -> None:
        self.base = FedAvg(**options)
        self._state: dict[str, dict[str, np.ndarray[Any, Any]]] = {}

    # Sampling, messages and evaluation are FedAvg's.

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        return self.base.configure_train(server_round, arrays, config, grid)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        return self.base.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, reduction: Reduction[Any]) -> MetricRecord:
        return self.base.aggregate_evaluate(server_round, reduction)

    def aggregate_train(
        self, server_round: int, reduction: Reduction[Any], arrays: ArrayRecord
    ) -> tuple[ArrayRecord, MetricRecord]:
        average, metrics = self.base.aggregate_train(server_round, reduction, arrays)
        if average is arrays:  # no update this round: the optimizer does not step
            return arrays, metrics
        return self.step(server_round, arrays, average), metrics

    def step(self, server_round: int, arrays: ArrayRecord, average: ArrayRecord) -> ArrayRecord:
        """New global arrays from the current ones and the average of the updates.

        This is the whole server-side maths of the strategy, without messages; it updates
        the optimizer state.
        """
        names = [name for name, a in arrays.items() if a.dtype.kind == "f"]
        current = [np.asarray(arrays[n], dtype=np.float64) for n in names]
        delta = [np.asarray(average[n], dtype=np.float64) - x for n, x in zip(names, current)]
        stepped = dict(zip(names, self._step(server_round, names, current, delta)))
        return ArrayRecord(
            (name, stepped[name].astype(a.dtype) if name in stepped else average[name])
            for name, a in arrays.items()
        )

    @abc.abstractmethod
    def _step(self, server_round: int, names: list[str], current: Arrays, delta: Arrays) -> Arrays:
        """The optimizer step on the float arrays ``names``; updates the state."""

    def _get(self, key: str, names: Sequence[str]) -> Arrays | None:
        state = self._state.get(key)
        if state is None:
            return None
        if list(state) != list(names):
            raise ConfigError(
                f"optimizer state {key!r} holds arrays {list(state)}, the model has {names}"
            )
        return list(state.values())

    def _put(self, key: str, names: Sequence[str], values: Arrays | None) -> None:
        if values is None:
            self._state.pop(key, None)
        else:
            self._state[key] = dict(zip(names, values))

    def state_dict(self) -> RecordDict:
        """The optimizer state, one :class:`ArrayRecord` per kind (empty before round 1)."""
        return RecordDict(
            (key, ArrayRecord((n, a.copy()) for n, a in self._state[key].items()))
            for key in self._STATE
            if key in self._state
        )

    def load_state_dict(self, state: RecordDict) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises
        ------
        ConfigError
            If ``state`` holds records this strategy does not keep, or not ArrayRecords.
        """
        loaded: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
        for key, record in state.items():
            if key not in self._STATE or not isinstance(record, ArrayRecord):
                raise ConfigError(
                    f"unexpected state record {key!r} for {type(self).__name__}; "
                    f"expected ArrayRecords among {list(self._STATE)}"
                )
            loaded[key] = {n: np.array(a, dtype=np.float64) for n, a in record.items()}
        self._state = loaded


class FedAvgM(_ServerOptStrategy):
    """FedAvg with server momentum (Hsu et al., 2019).

    ``v = server_momentum * v + (global - average)``; ``global -= server_learning_rate * v``.
    With the defaults (rate 1, momentum 0) it is FedAvg.

    Parameters
    ----------
    server_learning_rate, server_momentum
        The server's SGD step size and momentum.
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If the rate or momentum is negative, or a FedAvg option is invalid.
    """

    _STATE = ("momentum",)

    def __init__(
        self, *, server_learning_rate: float = 1.0, server_momentum: float = 0.0, **options: Any
    ) -> None:
        _check_range("server_learning_rate", server_learning_rate, 0.0)
        _check_range("server_momentum", server_momentum, 0.0)
        super().__init__(options)
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum

    def _step(self, server_round: int, names: list[str], current: Arrays, delta: Arrays) -> Arrays:
        new, velocity = momentum_step(
            current,
            delta,
            self._get("momentum", names),
            learning_rate=self.server_learning_rate,
            beta=self.server_momentum,
        )
        self._put("momentum", names, velocity)
        return new


class _AdaptiveStrategy(_ServerOptStrategy):
    def __init__(
        self,
        options: dict[str, Any],
        *,
        eta: float,
        eta_l: float,
        beta_1: float,
        beta_2: float,
        tau: float,
    ) -> None:
        _check_range("eta", eta, 0.0)
        _check_range("eta_l", eta_l, 0.0)
        _check_range("beta_1", beta_1, 0.0, 1.0)
        _check_range("beta_2", beta_2, 0.0, 1.0)
        _check_range("tau", tau, 0.0)
        super().__init__(options)
        self.eta = eta
        self.eta_l = eta_l
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.tau = tau


class FedAdagrad(_AdaptiveStrategy):
    """FedAdagrad: ``v += delta**2``; ``global += eta * m / (sqrt(v) + tau)``.

    ``m = beta_1 * m + (1 - beta_1) * delta``. With the default ``beta_1 = 0`` (Flower's
    FedAdagrad) ``m`` is ``delta`` and no first moment is kept; ``beta_1 > 0`` keeps the
    first moment of Reddi et al.'s Algorithm 2 (FLamby uses 0.9). Defaults are Flower's:
    ``eta = eta_l = 0.1``, ``tau = 1e-3``.

    Parameters
    ----------
    eta
        Server learning rate.
    eta_l
        Client learning rate the paper pairs with ``eta``. Not sent to nodes (as in Flower):
        pass it in ``train_config`` if the ClientApp should use it.
    beta_1
        Decay of the first moment; 0 keeps none. The state then holds ``v`` only, and
        ``m`` besides when ``beta_1 > 0``.
    tau
        Adaptivity: added to ``sqrt(v)`` in the denominator.
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If a rate or ``tau`` is negative, ``beta_1`` outside [0, 1), or a FedAvg option
        invalid.
    """

    def __init__(
        self,
        *,
        eta: float = 1e-1,
        eta_l: float = 1e-1,
        beta_1: float = 0.0,
        tau: float = 1e-3,
        **options: Any,
    ) -> None:
        super().__init__(options, eta=eta, eta_l=eta_l, beta_1=beta_1, beta_2=0.0, tau=tau)
        # Without a first moment there is no "m" to save or to accept from a checkpoint.
        self._STATE = ("m", "v") if beta_1 > 0 else ("v",)

    def _step(self, server_round: int, names: list[str], current: Arrays, delta: Arrays) -> Arrays:
        new, m, v = adagrad_step(
            current,
            delta,
            self._get("m", names),
            self._get("v", names),
            eta=self.eta,
            beta_1=self.beta_1,
            tau=self.tau,
        )
        self._put("m", names, m)
        self._put("v", names, v)
        return new


class FedAdam(_AdaptiveStrategy):
    """FedAdam: Adam on the pseudo-gradient, bias-corrected as in Flower by default.

    ``m = beta_1 m + (1 - beta_1) delta``, ``v = beta_2 v + (1 - beta_2) delta**2``,
    ``global += eta_t * m / (sqrt(v) + tau)``. With ``bias_correction`` (the default,
    Flower's) the rate at round t is ``eta_t = eta * sqrt(1 - beta_2**(t+1)) /
    (1 - beta_1**(t+1))``; without, ``eta_t = eta`` as in Reddi et al.'s Algorithm 2 and
    FLamby. Defaults are Flower's: ``eta = eta_l = 0.1``, ``beta_1 = 0.9``,
    ``beta_2 = 0.99``, ``tau = 1e-3``.

    Parameters
    ----------
    eta
        Server learning rate.
    eta_l
        Client learning rate the paper pairs with ``eta``. Not sent to nodes (as in Flower):
        pass it in ``train_config`` if the ClientApp should use it.
    beta_1, beta_2
        Decay of the first and second moments.
    tau
        Adaptivity: added to ``sqrt(v)`` in the denominator.
    bias_correction
        Scale ``eta`` by Flower's bias correction (True) or not (False, the paper's update).
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If a rate or ``tau`` is negative, a beta outside [0, 1), or a FedAvg option invalid.
    """

    _STATE = ("m", "v")

    def __init__(
        self,
        *,
        eta: float = 1e-1,
        eta_l: float = 1e-1,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        bias_correction: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(options, eta=eta, eta_l=eta_l, beta_1=beta_1, beta_2=beta_2, tau=tau)
        self.bias_correction = bias_correction

    def _step(self, server_round: int, names: list[str], current: Arrays, delta: Arrays) -> Arrays:
        new, m, v = adam_step(
            current,
            delta,
            self._get("m", names),
            self._get("v", names),
            eta=self.eta,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            tau=self.tau,
            step=server_round,
            bias_correction=self.bias_correction,
        )
        self._put("m", names, m)
        self._put("v", names, v)
        return new


class FedYogi(_AdaptiveStrategy):
    """FedYogi: ``v -= (1 - beta_2) * delta**2 * sign(v - delta**2)``.

    The first moment and the step are FedAdam's without bias correction, as in Flower,
    Reddi et al. and FLamby alike.

    Defaults are Flower's: ``eta = 0.01``, ``eta_l = 0.0316``, ``beta_1 = 0.9``,
    ``beta_2 = 0.99``, ``tau = 1e-3``.
    """

    _STATE = ("m", "v")

    def __init__(
        self,
        *,
        eta: float = 1e-2,
        eta_l: float = 0.0316,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        **options: Any,
    ) -> None:
        super().__init__(options, eta=eta, eta_l=eta_l, beta_1=beta_1, beta_2=beta_2, tau=tau)

    def _step(self, server_round: int, names: list[str], current: Arrays, delta: Arrays) -> Arrays:
        new, m, v = yogi_step(
            current,
            delta,
            self._get("m", names),
            self._get("v", names),
            eta=self.eta,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            tau=self.tau,
        )
        self._put("m", names, m)
        self._put("v", names, v)
        return new
