"""Server-side optimization: FedAvgM (Hsu et al., 2019) and FedAdagrad, FedAdam, FedYogi
(Reddi et al., 2021, "Adaptive Federated Optimization").

Each strategy is assembled from FedAvg's parts (sampling, messages and the streaming
weighted average, O(model) server memory) and a :class:`ServerOptimizer` that steps from
the global arrays along the pseudo-gradient ``delta = average - global``
(:mod:`._optimizers`, over the pure kernels of :mod:`._server_opt`). The optimizer state
(momentum, moments) is exported and restored with :meth:`state_dict` /
:meth:`load_state_dict`.
"""

from __future__ import annotations

from typing import Any

from ._composed import ComposedStrategy, Setting
from ._optimizers import Adagrad, Adam, ServerMomentum, Yogi, check_range

__all__ = ["FedAdagrad", "FedAdam", "FedAvgM", "FedYogi"]


class FedAvgM(ComposedStrategy):
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

    server_learning_rate: Setting[float] = Setting("_optimizer", "learning_rate")
    server_momentum: Setting[float] = Setting("_optimizer", "momentum")

    def __init__(
        self, *, server_learning_rate: float = 1.0, server_momentum: float = 0.0, **options: Any
    ) -> None:
        super().__init__(**options)
        self._optimizer = ServerMomentum(
            learning_rate=server_learning_rate, momentum=server_momentum
        )


class _Adaptive(ComposedStrategy):
    """The settings FedAdagrad, FedAdam and FedYogi share; their optimizer keeps them."""

    eta: Setting[float] = Setting("_optimizer")
    beta_1: Setting[float] = Setting("_optimizer")
    beta_2: Setting[float] = Setting("_optimizer")
    tau: Setting[float] = Setting("_optimizer")

    def __init__(self, options: dict[str, Any], eta_l: float) -> None:
        check_range("eta_l", eta_l, 0.0)
        super().__init__(**options)
        #: The client learning rate the paper pairs with ``eta``; not sent to nodes.
        self.eta_l = eta_l


class FedAdagrad(_Adaptive):
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
        super().__init__(options, eta_l)
        self._optimizer = Adagrad(eta=eta, beta_1=beta_1, tau=tau)


class FedAdam(_Adaptive):
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

    bias_correction: Setting[bool] = Setting("_optimizer")

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
        super().__init__(options, eta_l)
        self._optimizer = Adam(
            eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau, bias_correction=bias_correction
        )


class FedYogi(_Adaptive):
    """FedYogi: ``v -= (1 - beta_2) * delta**2 * sign(v - delta**2)``.

    The first moment and the step are FedAdam's without bias correction, as in Flower,
    Reddi et al. and FLamby alike.

    Defaults are Flower's: ``eta = 0.01``, ``eta_l = 0.0316``, ``beta_1 = 0.9``,
    ``beta_2 = 0.99``, ``tau = 1e-3``.
    """

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
        super().__init__(options, eta_l)
        self._optimizer = Yogi(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
