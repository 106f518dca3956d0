"""q-FedAvg (Li et al., 2020, "Fair Resource Allocation in Federated Learning").

Each node reports its updated arrays ``w_k`` and its training loss ``F_k``. With
``L = 1 / client_learning_rate`` and ``g_k = L * (w - w_k)``, the server computes

    delta_k = F_k**q * g_k
    h_k     = q * F_k**(q - 1) * |g_k|^2 + L * F_k**q
    w      <- w - sum(delta_k) / sum(h_k)

Both sums fold reply by reply, so :class:`QFedAvgAggregator` is mergeable and holds
O(model) memory (the global arrays and one float64 sum). This follows Flower's Message-API
``QFedAvg`` (``F_k + 1e-10`` in the powers, loss read from the reply's metrics).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import AggregationError, ArrayRecord, ConfigError, MetricRecord, RecordDict
from ..server import Grid
from ._casting import to_dtype
from ._composed import ComposedStrategy, Setting
from ._metrics import WeightedMetrics
from ._replies import RecordNames, array_spec, check_finite, reply_arrays
from ._training import Training

__all__ = ["QFedAvg", "QFedAvgAggregator", "QFedAvgTraining", "qfedavg_terms"]

_EPS = 1e-10


def qfedavg_terms(
    global_arrays: list[np.ndarray[Any, Any]],
    local_arrays: list[np.ndarray[Any, Any]],
    loss: float,
    q: float,
    lipschitz: float,
) -> tuple[list[np.ndarray[Any, Any]], float]:
    """``(delta_k, h_k)`` of one node: float64 arrays shaped like the global ones, and a
    float (a pure kernel)."""
    grads = [
        lipschitz * (np.asarray(g, np.float64) - np.asarray(w, np.float64))
        for g, w in zip(global_arrays, local_arrays)
    ]
    norm = float(sum(np.vdot(g, g).real for g in grads))
    power = float(np.float_power(loss + _EPS, q))
    h = q * float(np.float_power(loss + _EPS, q - 1)) * norm + lipschitz * power
    # Arithmetic on 0-d arrays gives NumPy scalars, which the aggregator cannot add into
    # in place: every term is made an array again.
    return [np.asarray(power * g) for g in grads], h


class QFedAvgAggregator:
    """Mergeable sums ``sum(delta_k)`` and ``sum(h_k)`` of q-FedAvg, plus weighted metrics.

    Parameters
    ----------
    global_arrays
        The arrays the round started from (``w``).
    q, lipschitz
        q-FedAvg's fairness exponent and ``L = 1 / client learning rate``.
    """

    def __init__(
        self,
        global_arrays: ArrayRecord,
        *,
        q: float,
        lipschitz: float,
        arrays_key: str = "arrays",
        metrics_key: str = "metrics",
        weight_key: str = "num-examples",
        loss_key: str = "train_loss",
    ) -> None:
        self.global_arrays = global_arrays
        self.q = q
        self.lipschitz = lipschitz
        self.arrays_key = arrays_key
        self.metrics_key = metrics_key
        self.weight_key = weight_key
        self.loss_key = loss_key
        self._spec = array_spec(global_arrays)
        self._metrics = WeightedMetrics(metrics_key=metrics_key, weight_key=weight_key)
        self._delta: list[np.ndarray[Any, Any]] | None = None
        self._h = 0.0

    @property
    def count(self) -> int:
        return self._metrics.count

    def empty(self) -> QFedAvgAggregator:
        return QFedAvgAggregator(
            self.global_arrays,
            q=self.q,
            lipschitz=self.lipschitz,
            arrays_key=self.arrays_key,
            metrics_key=self.metrics_key,
            weight_key=self.weight_key,
            loss_key=self.loss_key,
        )

    def add(self, content: RecordDict, node_id: int) -> None:
        arrays = reply_arrays(content, self.arrays_key, self._spec)
        check_finite(arrays)
        metrics = content.get(self.metrics_key)
        loss = metrics.get(self.loss_key) if isinstance(metrics, MetricRecord) else None
        if isinstance(loss, list) or loss is None or not np.isfinite(loss) or loss < 0:
            raise AggregationError(
                f"reply metrics need a finite training loss >= 0 under {self.loss_key!r}"
            )
        metric_reply = self._metrics.read(content)
        delta, h = qfedavg_terms(
            list(self.global_arrays.values()), list(arrays.values()), loss, self.q, self.lipschitz
        )
        self._metrics.fold(metric_reply)
        if self._delta is None:
            self._delta = delta
        else:
            for total, d in zip(self._delta, delta):
                np.add(total, d, out=total)
        self._h += h

    def merge(self, other: QFedAvgAggregator) -> None:
        if other.count == 0 or other._delta is None:
            return
        self._metrics.merge(other._metrics)
        if self._delta is None:
            self._delta = [d.copy() for d in other._delta]
        else:
            for total, d in zip(self._delta, other._delta):
                np.add(total, d, out=total)
        self._h += other._h

    def arrays(self) -> ArrayRecord | None:
        """``w - sum(delta_k) / sum(h_k)`` in the global arrays' dtypes; None if empty."""
        if self._delta is None or self._h <= 0:
            return None
        return ArrayRecord(
            (
                name,
                to_dtype(np.asarray(w, np.float64) - d / self._h, w.dtype),
            )
            for (name, w), d in zip(self.global_arrays.items(), self._delta)
        )

    def metrics(self) -> MetricRecord:
        """Weighted means of the replies' numeric metrics, plus the total weight."""
        return self._metrics.metrics()


class QFedAvgTraining(Training):
    """q-FedAvg's training: replies fold into a :class:`QFedAvgAggregator`, whose step
    gives the new global arrays.

    Parameters
    ----------
    client_learning_rate
        The nodes' learning rate; ``L = 1 / client_learning_rate``.
    q
        The fairness exponent.
    train_loss_key
        Metric holding each node's training loss.

    Raises
    ------
    ConfigError
        If ``client_learning_rate`` is not positive or ``q`` is negative.
    """

    def __init__(self, *, client_learning_rate: float, q: float, train_loss_key: str) -> None:
        if not client_learning_rate > 0:
            raise ConfigError(f"client_learning_rate must be > 0, got {client_learning_rate}")
        if not q >= 0:
            raise ConfigError(f"q must be >= 0, got {q}")
        self.client_learning_rate = client_learning_rate
        self.q = q
        self.train_loss_key = train_loss_key

    def aggregator(
        self, arrays: ArrayRecord, records: RecordNames, grid: Grid
    ) -> QFedAvgAggregator:
        return QFedAvgAggregator(
            arrays,
            q=self.q,
            lipschitz=1.0 / self.client_learning_rate,
            arrays_key=records.arrays_key,
            metrics_key=records.metrics_key,
            weight_key=records.weight_key,
            loss_key=self.train_loss_key,
        )

    def result(self, aggregator: QFedAvgAggregator, arrays: ArrayRecord) -> ArrayRecord | None:
        return aggregator.arrays()


class QFedAvg(ComposedStrategy):
    """q-FedAvg: FedAvg's rounds with q-FFL's fair aggregation.

    Nodes must report their training loss under ``train_loss_key`` in the metrics.

    Parameters
    ----------
    client_learning_rate
        The nodes' learning rate; ``L = 1 / client_learning_rate``.
    q
        Fairness: 0 weighs nodes like FedAvg's gradient step, larger favours high losses.
    train_loss_key
        Metric holding each node's training loss.
    **options
        :class:`FedAvg`'s options (sampling, minimums, record names, seed, selection).

    Raises
    ------
    ConfigError
        If ``client_learning_rate`` is not positive or ``q`` is negative.
    """

    client_learning_rate: Setting[float] = Setting("_training")
    q: Setting[float] = Setting("_training")
    train_loss_key: Setting[str] = Setting("_training")

    def __init__(
        self,
        *,
        client_learning_rate: float,
        q: float = 0.1,
        train_loss_key: str = "train_loss",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._training = QFedAvgTraining(
            client_learning_rate=client_learning_rate, q=q, train_loss_key=train_loss_key
        )
