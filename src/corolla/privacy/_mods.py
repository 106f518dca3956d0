"""Client-side privacy: mods that clip (and for local DP, noise) the update a ClientApp
returns before it leaves the node.

A mod wraps every handler of a :class:`~corolla.client.ClientApp`
(``ClientApp(mods=[clipping_mod])``); these act on ``train`` messages only and let others
pass. The update is the reply's arrays minus the arrays the message carried, taken as one
flat vector across all arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..client import CallNext
from ..core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from ._accountant import dp_accounting_module
from ._clipping import add_gaussian_noise, check_clipping_norm, clip_update

__all__ = [
    "CLIPPING_NORM_KEY",
    "UNCLIPPED_KEY",
    "ClippingMod",
    "LocalDP",
    "clipping_mod",
]

#: The train config entry in which the server sends the round's clipping norm.
CLIPPING_NORM_KEY = "dp-clipping-norm"
#: The reply metric saying whether the update was within the norm (1) or clipped (0).
UNCLIPPED_KEY = "dp-unclipped"


def _is_train(message: Message) -> bool:
    message_type = message.metadata.message_type
    return message_type == "train" or message_type.startswith("train.")


class _UpdateMod:
    """What both mods share: finding the update of a train reply and replacing it."""

    def __init__(self, arrays_key: str, config_key: str, metrics_key: str) -> None:
        self.arrays_key = arrays_key
        self.config_key = config_key
        self.metrics_key = metrics_key

    def _start(self, message: Message) -> ArrayRecord:
        arrays = message.content.get(self.arrays_key)
        if not isinstance(arrays, ArrayRecord):
            raise ConfigError(
                f"the train message has no ArrayRecord {self.arrays_key!r} to take the update from"
            )
        return arrays

    def _update(self, start: ArrayRecord, reply: Message) -> list[np.ndarray[Any, Any]]:
        arrays = reply.content.get(self.arrays_key)
        if not isinstance(arrays, ArrayRecord) or list(arrays) != list(start):
            got = list(arrays) if isinstance(arrays, ArrayRecord) else None
            raise ConfigError(
                f"the ClientApp's reply must carry the ArrayRecord {self.arrays_key!r} with "
                f"the arrays it was sent ({list(start)}), got {got}"
            )
        for name, a in arrays.items():
            if a.shape != start[name].shape:
                raise ConfigError(
                    f"the reply's array {name!r} has shape {a.shape}, the message's "
                    f"{start[name].shape}"
                )
        return [
            np.asarray(arrays[name], dtype=np.float64) - np.asarray(a, dtype=np.float64)
            for name, a in start.items()
        ]

    def _replace(
        self,
        message: Message,
        reply: Message,
        start: ArrayRecord,
        update: list[np.ndarray[Any, Any]],
        metrics: dict[str, Any],
    ) -> Message:
        sent = reply.content[self.arrays_key]
        assert isinstance(sent, ArrayRecord)
        arrays = ArrayRecord(
            (name, (np.asarray(a, np.float64) + u).astype(sent[name].dtype))
            for (name, a), u in zip(start.items(), update, strict=True)
        )
        content = dict(reply.content) | {self.arrays_key: arrays}
        if metrics:
            old = reply.content.get(self.metrics_key)
            base = dict(old) if isinstance(old, MetricRecord) else {}
            content[self.metrics_key] = MetricRecord(base | metrics)
        return Message(RecordDict(content), reply_to=message)


class ClippingMod(_UpdateMod):
    """Clips the update of every ``train`` reply to the norm the server sent in the
    message's config (``dp-clipping-norm``), and reports in the reply's metrics whether
    it was within that norm (``dp-unclipped``: 1, or 0 when clipped).

    The client side of :class:`~corolla.privacy.CentralDP` with ``clipping="client"``:
    the node bounds its own contribution, so the bound holds however the server
    aggregates (with secure aggregation, the server never sees one update). Only the
    bit of adaptive clipping leaves the node besides the update, and the server releases
    its sum only with noise.

    Parameters
    ----------
    arrays_key, config_key, metrics_key
        Names of the records in messages and replies (the strategy's).
    """

    def __init__(
        self,
        *,
        arrays_key: str = "arrays",
        config_key: str = "config",
        metrics_key: str = "metrics",
    ) -> None:
        super().__init__(arrays_key, config_key, metrics_key)

    def __call__(self, message: Message, context: Context, call_next: CallNext) -> Message:
        """Run the handler; clip the update of its reply to a ``train`` message.

        Raises
        ------
        ConfigError
            If a train message carries no clipping norm (the server does not clip on
            nodes), or the reply's arrays do not match the message's.
        """
        if not _is_train(message):
            return call_next(message, context)
        config = message.content.get(self.config_key)
        norm = config.get(CLIPPING_NORM_KEY) if isinstance(config, ConfigRecord) else None
        if not isinstance(norm, int | float) or isinstance(norm, bool):
            raise ConfigError(
                f"the train message's config has no number {CLIPPING_NORM_KEY!r}: the "
                f"server must run CentralDP(..., clipping='client') for nodes to clip"
            )
        start = self._start(message)
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        clipped, _, within = clip_update(self._update(start, reply), check_clipping_norm(norm))
        return self._replace(message, reply, start, clipped, {UNCLIPPED_KEY: int(within)})


#: :class:`ClippingMod` with the default record names.
clipping_mod = ClippingMod()


class LocalDP(_UpdateMod):
    """Local differential privacy: each ``train`` reply's update is clipped to
    ``clipping_norm`` and Gaussian noise is added on the node, before it leaves.

    Each release (one round's update) is (epsilon, delta)-DP with respect to the node's
    whole data set, against everyone who sees the update: the server, and anyone the
    server shares it with; no trust in the server or in other nodes is needed. Two data
    sets of the node may give any two updates within the ball of radius C, whose
    difference is at most 2 C: the noise, of standard deviation ``noise_multiplier * C``
    on every element, is a Gaussian mechanism of multiplier ``noise_multiplier / 2``,
    and :attr:`epsilon` is its exact epsilon at ``delta`` (Balle and Wang, 2018). Rounds
    compose: k releases cost about sqrt(k) times more (use :class:`PrivacyAccountant`
    with all nodes sampled to compose them). The noise is far larger than central DP's
    for the same epsilon, since it is not averaged away before release.

    Parameters
    ----------
    clipping_norm
        C, the bound on the update's L2 norm before noise.
    noise_multiplier, epsilon
        The noise, given either as its standard deviation over C, or as the epsilon of
        one release (the multiplier is then the smallest that achieves it).
    delta
        The delta of one release.
    seed
        For reproducible noise (tests, experiments): each node and round then draws from
        a generator seeded by ``(seed, node id, round)``. None (default): fresh OS entropy
        every release, which real deployments need.

    Raises
    ------
    ConfigError
        If both or neither of ``noise_multiplier`` and ``epsilon`` are given, or a value is
        out of range.
    """

    def __init__(
        self,
        clipping_norm: float,
        *,
        noise_multiplier: float | None = None,
        epsilon: float | None = None,
        delta: float = 1e-5,
        seed: int | None = None,
        arrays_key: str = "arrays",
        config_key: str = "config",
        metrics_key: str = "metrics",
    ) -> None:
        super().__init__(arrays_key, config_key, metrics_key)
        dp = dp_accounting_module()
        self.clipping_norm = check_clipping_norm(clipping_norm)
        if not 0.0 < delta < 1.0:
            raise ConfigError(f"delta must be in (0, 1), got {delta}")
        if (noise_multiplier is None) == (epsilon is None):
            raise ConfigError("give LocalDP exactly one of noise_multiplier and epsilon")
        if epsilon is not None:
            if not 0.0 < epsilon < math.inf:
                raise ConfigError(f"epsilon must be > 0, got {epsilon}")
            # Sensitivity 2 C: the multiplier relative to C is twice the mechanism's.
            noise_multiplier = 2.0 * float(dp.get_sigma_gaussian(epsilon, delta))
        assert noise_multiplier is not None
        if not 0.0 < noise_multiplier < math.inf:
            raise ConfigError(f"noise multiplier must be > 0, got {noise_multiplier}")
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)
        #: The epsilon of one release at :attr:`delta`.
        self.epsilon = float(dp.get_epsilon_gaussian(self.noise_multiplier / 2.0, delta))
        self.seed = seed

    def _rng(self, message: Message, context: Context) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        config = message.content.get(self.config_key)
        server_round = config.get("server-round", 0) if isinstance(config, ConfigRecord) else 0
        if not isinstance(server_round, int):
            server_round = 0
        return np.random.default_rng([self.seed, context.node_id, server_round])

    def __call__(self, message: Message, context: Context, call_next: CallNext) -> Message:
        """Run the handler; clip and noise the update of its reply to a ``train`` message.

        Raises
        ------
        ConfigError
            If the reply's arrays do not match the message's.
        """
        if not _is_train(message):
            return call_next(message, context)
        start = self._start(message)
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        clipped, _, _ = clip_update(self._update(start, reply), self.clipping_norm)
        stddev = self.noise_multiplier * self.clipping_norm
        noised = add_gaussian_noise(clipped, stddev, self._rng(message, context))
        return self._replace(message, reply, start, noised, {})
