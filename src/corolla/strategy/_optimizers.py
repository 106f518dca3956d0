"""Server optimizers as parts of a strategy: one step on the pseudo-gradient after the
average.

A :class:`ServerOptimizer` takes the global arrays and the round's aggregate (the weighted
average of the updates, for FedAvgM, FedAdagrad, FedAdam and FedYogi) and steps along
``delta = aggregate - global`` with one of the pure kernels of :mod:`._server_opt`. Only
floating-point arrays are stepped; other arrays (counters, integer buffers) take the
aggregate as it is. The optimizer's state (momentum, moments) lives in the part, in
float64, and is exported and restored with :meth:`ServerOptimizer.state_dict` /
:meth:`ServerOptimizer.load_state_dict`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import ArrayRecord, ConfigError, RecordDict
from ._server_opt import Arrays, adagrad_step, adam_step, momentum_step, yogi_step

__all__ = ["Adagrad", "Adam", "ServerMomentum", "ServerOptimizer", "Yogi", "check_range"]


def check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    """Check ``low <= value`` (and ``value < high`` if given); NaN is out of every range.

    Raises
    ------
    ConfigError
        If ``value`` is out of range.
    """
    if not value >= low or (high is not None and not value < high):
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be {bound}, got {value}")


class ServerOptimizer(abc.ABC):
    """One optimizer step per round on the pseudo-gradient ``aggregate - global``."""

    def __init__(self) -> None:
        # Per kind of state ("m", "v", "momentum"): float64 arrays by global array name.
        self._state: dict[str, dict[str, np.ndarray[Any, Any]]] = {}

    @property
    @abc.abstractmethod
    def state_keys(self) -> tuple[str, ...]:
        """Names of the state records (each an ArrayRecord keyed like the global arrays)."""

    def step(self, server_round: int, arrays: ArrayRecord, aggregate: ArrayRecord) -> ArrayRecord:
        """New global arrays from the current ones and the round's aggregate; updates the
        optimizer state.

        Raises
        ------
        ConfigError
            If the state holds arrays other than the model's floating-point ones.
        """
        names = [name for name, a in arrays.items() if a.dtype.kind == "f"]
        current = [np.asarray(arrays[n], dtype=np.float64) for n in names]
        delta = [np.asarray(aggregate[n], dtype=np.float64) - x for n, x in zip(names, current)]
        stepped = dict(zip(names, self._step(server_round, names, current, delta)))
        return ArrayRecord(
            (name, stepped[name].astype(a.dtype) if name in stepped else aggregate[name])
            for name, a in arrays.items()
        )

    @abc.abstractmethod
    def _step(self, server_round: int, names: list[str], current: Arrays, delta: Arrays) -> Arrays:
        """The step on the float arrays ``names``; updates the state."""

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
            for key in self.state_keys
            if key in self._state
        )

    def load_state_dict(self, state: RecordDict) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises
        ------
        ConfigError
            If ``state`` holds records this optimizer does not keep, or not ArrayRecords.
        """
        loaded: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
        for key, record in state.items():
            if key not in self.state_keys or not isinstance(record, ArrayRecord):
                raise ConfigError(
                    f"unexpected state record {key!r} for {type(self).__name__}; "
                    f"expected ArrayRecords among {list(self.state_keys)}"
                )
            loaded[key] = {n: np.array(a, dtype=np.float64) for n, a in record.items()}
        self._state = loaded


class ServerMomentum(ServerOptimizer):
    """SGD with server momentum (FedAvgM): ``v = momentum * v + (global - aggregate)``;
    ``global -= learning_rate * v``. Rate 1 and momentum 0 take the aggregate as it is.

    Raises
    ------
    ConfigError
        If the rate or the momentum is negative.
    """

    def __init__(self, *, learning_rate: float = 1.0, momentum: float = 0.0) -> None:
        check_range("server_learning_rate", learning_rate, 0.0)
        check_range("server_momentum", momentum, 0.0)
        super().__init__()
        self.learning_rate = learning_rate
        self.momentum = momentum

    @property
    def state_keys(self) -> tuple[str, ...]:
        return ("momentum",)

    def _step(self, server_round: int, names: list[str], current: Arrays, delta: Arrays) -> Arrays:
        new, velocity = momentum_step(
            current,
            delta,
            self._get("momentum", names),
            learning_rate=self.learning_rate,
            beta=self.momentum,
        )
        self._put("momentum", names, velocity)
        return new


class _Moments(ServerOptimizer):
    """An adaptive optimizer: a first moment ``m`` and a second moment ``v`` per array.

    Raises
    ------
    ConfigError
        If ``eta`` or ``tau`` is negative or a beta outside [0, 1).
    """

    def __init__(self, *, eta: float, beta_1: float, beta_2: float, tau: float) -> None:
        check_range("eta", eta, 0.0)
        check_range("beta_1", beta_1, 0.0, 1.0)
        check_range("beta_2", beta_2, 0.0, 1.0)
        check_range("tau", tau, 0.0)
        super().__init__()
        self.eta = eta
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.tau = tau

    @property
    def state_keys(self) -> tuple[str, ...]:
        return ("m", "v")

    def _step(self, server_round: int, names: list[str], current: Arrays, delta: Arrays) -> Arrays:
        m, v = self._get("m", names), self._get("v", names)
        new, m, v = self._moments_step(server_round, current, delta, m, v)
        self._put("m", names, m)
        self._put("v", names, v)
        return new

    @abc.abstractmethod
    def _moments_step(
        self, server_round: int, current: Arrays, delta: Arrays, m: Arrays | None, v: Arrays | None
    ) -> tuple[Arrays, Arrays | None, Arrays]:
        """The kernel's ``(new arrays, m, v)``; ``m`` is None when none is kept."""


class Adagrad(_Moments):
    """FedAdagrad's step: ``v += delta**2``; ``global += eta * m / (sqrt(v) + tau)``, with
    ``m = beta_1 * m + (1 - beta_1) * delta``, which is ``delta`` itself (and not kept)
    when ``beta_1 = 0``.

    Raises
    ------
    ConfigError
        If ``eta`` or ``tau`` is negative or ``beta_1`` outside [0, 1).
    """

    def __init__(self, *, eta: float, beta_1: float, tau: float) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=0.0, tau=tau)

    @property
    def state_keys(self) -> tuple[str, ...]:
        # Without a first moment there is no "m" to save or to accept from a checkpoint.
        return ("m", "v") if self.beta_1 > 0 else ("v",)

    def _moments_step(
        self, server_round: int, current: Arrays, delta: Arrays, m: Arrays | None, v: Arrays | None
    ) -> tuple[Arrays, Arrays | None, Arrays]:
        return adagrad_step(current, delta, m, v, eta=self.eta, beta_1=self.beta_1, tau=self.tau)


class Adam(_Moments):
    """FedAdam's step: Adam on the pseudo-gradient, with Flower's bias correction of the
    rate when ``bias_correction`` (see :func:`._server_opt.adam_step`).

    Raises
    ------
    ConfigError
        If ``eta`` or ``tau`` is negative or a beta outside [0, 1).
    """

    def __init__(
        self, *, eta: float, beta_1: float, beta_2: float, tau: float, bias_correction: bool
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
        self.bias_correction = bias_correction

    def _moments_step(
        self, server_round: int, current: Arrays, delta: Arrays, m: Arrays | None, v: Arrays | None
    ) -> tuple[Arrays, Arrays | None, Arrays]:
        return adam_step(
            current,
            delta,
            m,
            v,
            eta=self.eta,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            tau=self.tau,
            step=server_round,
            bias_correction=self.bias_correction,
        )


class Yogi(_Moments):
    """FedYogi's step: Adam's first moment and step without bias correction, and
    ``v -= (1 - beta_2) * delta**2 * sign(v - delta**2)``.

    Raises
    ------
    ConfigError
        If ``eta`` or ``tau`` is negative or a beta outside [0, 1).
    """

    def _moments_step(
        self, server_round: int, current: Arrays, delta: Arrays, m: Arrays | None, v: Arrays | None
    ) -> tuple[Arrays, Arrays | None, Arrays]:
        return yogi_step(
            current, delta, m, v, eta=self.eta, beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau
        )
