"""How a training reply becomes one vector of Z_(2**32) whose sum over nodes the weighted
average needs, and how that sum becomes the average again.

A node with update ``x`` (the global arrays ``g`` plus its delta ``d = x - g``), weight
``w`` (its ``num-examples``, rounded to an integer and capped at ``max_weight = W``) and
metrics ``m`` sends, in this order:

- ``w``, as an integer;
- for each metric the server names: ``(w / W) m`` quantized within ``metrics_range``, and
  ``w`` again where the node reported that metric (0 where it did not);
- ``(w / W) clip(d, -c, c)`` quantized within ``c = clipping_range``, every array
  flattened in the order of the global arrays.

Sums of ``n`` nodes fit the ring: ``n W < 2**32`` (checked) and the quantization levels
are ``L = floor((2**31 - 1) / n)``, so ``|sum| <= n L < 2**31``. The server turns the sum
into ``g + W sum((w/W) d) / sum(w)``: the weighted average of the updates, as FedAvg takes
it, with ``step = c / L`` and a worst-case error per element of::

    n W step / (2 sum(w))  =  (W / mean weight) * c / (2 L)  ~  (W / mean w) n c / 2**32

for updates whose deltas lie within ``[-c, c]`` (deltas beyond it are clipped to it first).
With 100 nodes of equal weight ``W`` and ``c = 1``: 2.3e-8. Metrics alike, with
``metrics_range`` for ``c``. Rounding is deterministic (to nearest, ties to even).

With differential privacy (:class:`DPShare`, when SecAgg+ wraps
:class:`~corolla.privacy.CentralDP`), the updates are not weighted: a node clips its delta
``d`` to the L2 norm ``C``, adds its share of the Gaussian noise and sends
``clip(clip_C(d) + noise, -c, c)`` quantized, unscaled, after ``w`` and a 1 that counts
it; the server takes the sum itself (:meth:`Encoding.decode_sum`), off by at most
``n step / 2`` per element. Metrics are weighted by ``w`` as above.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core import ArrayRecord, ConfigError, ConfigRecord, MessageError, MetricRecord, RecordDict
from ._clipping import check_clipping_norm, clip_in_place
from ._secagg_crypto import check_quantization, dequantize, quantize, quantize_in_place
from ._secagg_wire import require

__all__ = ["DPShare", "DecodedSum", "Encoding", "check_arrays", "levels_for"]

_RING = 1 << 32


def levels_for(num_nodes: int) -> int:
    """The quantization levels ``L`` for sums of ``num_nodes`` vectors: the largest with
    ``num_nodes * L < 2**31``.

    Raises
    ------
    ConfigError
        If ``num_nodes`` < 1.
    """
    if num_nodes < 1:
        raise ConfigError(f"need at least one node, got {num_nodes}")
    return (_RING // 2 - 1) // num_nodes


@dataclasses.dataclass(frozen=True)
class DPShare:
    """What a node does to its update for differential privacy under secure aggregation:
    clip it to the L2 norm ``clipping_norm`` and add Gaussian noise of standard deviation
    ``noise_stddev`` to each element (its share of the noise the sum must carry).

    Raises
    ------
    ConfigError
        If the norm is not positive or the standard deviation negative.
    """

    clipping_norm: float
    noise_stddev: float

    def __post_init__(self) -> None:
        check_clipping_norm(self.clipping_norm)
        if not 0.0 <= self.noise_stddev < math.inf:
            raise ConfigError(
                f"noise standard deviation must be finite and >= 0, got {self.noise_stddev!r}"
            )


@dataclasses.dataclass(frozen=True)
class DecodedSum:
    """The unmasked sum of the nodes' DP updates: how many it holds, the sum of their
    clipped and noised deltas (float64, the arrays' shapes), and their weighted mean
    metrics with their total weight."""

    count: int
    sums: list[np.ndarray[Any, Any]]
    metrics: MetricRecord


@dataclasses.dataclass(frozen=True)
class Encoding:
    """The vector layout of one round (see the module's description).

    Raises
    ------
    ConfigError
        If a range is not positive, ``levels`` or ``max_weight`` out of range, or metric
        names repeat.
    """

    clipping_range: float
    metrics_range: float
    levels: int
    max_weight: int
    metrics: tuple[str, ...]
    #: The global arrays' names, shapes and dtypes: the layout of the vector's tail.
    spec: tuple[tuple[str, tuple[int, ...], str], ...]
    arrays_key: str = "arrays"
    metrics_key: str = "metrics"
    weight_key: str = "num-examples"
    #: Clipping and noise for differential privacy; None for a plain weighted average.
    dp: DPShare | None = None

    def __post_init__(self) -> None:
        check_quantization(self.clipping_range, self.levels)
        check_quantization(self.metrics_range, self.levels)
        if not 1 <= self.max_weight < _RING:
            raise ConfigError(f"max_weight must be in 1..2**32-1, got {self.max_weight!r}")
        if len(set(self.metrics)) != len(self.metrics) or self.weight_key in self.metrics:
            raise ConfigError(
                f"metrics must be distinct names other than the weight, got {self.metrics}"
            )

    @property
    def _head(self) -> int:
        """Where the metrics start: after the weight, and the count with DP."""
        return 1 if self.dp is None else 2

    @property
    def length(self) -> int:
        """The vector's length."""
        arrays = sum(math.prod(shape) for _, shape, _ in self.spec)
        return self._head + 2 * len(self.metrics) + arrays

    def to_config(self) -> dict[str, Any]:
        """The entries a setup message carries."""
        dp: dict[str, Any] = {}
        if self.dp is not None:
            dp = {
                "dp-clipping-norm": self.dp.clipping_norm,
                "dp-noise-stddev": self.dp.noise_stddev,
            }
        return dp | {
            "clipping-range": float(self.clipping_range),
            "metrics-range": float(self.metrics_range),
            "levels": self.levels,
            "max-weight": self.max_weight,
            "metrics": list(self.metrics),
            "arrays-key": self.arrays_key,
            "metrics-key": self.metrics_key,
            "weight-key": self.weight_key,
        }

    @classmethod
    def from_config(cls, record: ConfigRecord, arrays: ArrayRecord) -> Encoding:
        """The encoding a setup message names, for updates of ``arrays``' layout.

        Raises
        ------
        MessageError
            If an entry is missing or malformed.
        """
        try:
            dp = None
            if "dp-clipping-norm" in record:
                dp = DPShare(
                    float(require(record, "dp-clipping-norm", (float, int))),
                    float(require(record, "dp-noise-stddev", (float, int))),
                )
            return cls(
                dp=dp,
                clipping_range=float(require(record, "clipping-range", (float, int))),
                metrics_range=float(require(record, "metrics-range", (float, int))),
                levels=require(record, "levels", int),
                max_weight=require(record, "max-weight", int),
                metrics=tuple(require(record, "metrics", str, many=True)),
                spec=tuple((n, tuple(a.shape), a.dtype.str) for n, a in arrays.items()),
                arrays_key=require(record, "arrays-key", str),
                metrics_key=require(record, "metrics-key", str),
                weight_key=require(record, "weight-key", str),
            )
        except ConfigError as exc:
            raise MessageError(f"the server's SecAgg+ settings are invalid: {exc}") from exc

    def encode(
        self,
        reply: RecordDict,
        global_arrays: ArrayRecord,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray[Any, Any]:
        """A node's reply to a training message as the vector it masks (uint32); with
        :attr:`dp`, its noise is drawn from ``rng`` (by default one seeded by the
        operating system).

        Raises
        ------
        MessageError
            If the reply lacks the arrays, metrics or weight, or its arrays do not have
            the global arrays' names and shapes, or hold NaN or infinity.
        """
        metrics = reply.get(self.metrics_key)
        if not isinstance(metrics, MetricRecord):
            raise MessageError(f"the train reply has no MetricRecord {self.metrics_key!r}")
        raw_weight = metrics.get(self.weight_key)
        if not isinstance(raw_weight, int | float) or not math.isfinite(raw_weight):
            raise MessageError(
                f"the train reply's metric {self.weight_key!r} must be a finite number, "
                f"got {raw_weight!r}"
            )
        if raw_weight < 0:
            raise MessageError(f"the train reply's weight is negative: {raw_weight}")
        weight = min(round(raw_weight), self.max_weight)
        scale = weight / self.max_weight
        vector = np.empty(self.length, dtype=np.uint32)
        vector[0] = weight
        head = self._head
        if self.dp is not None:
            vector[1] = 1
        for i, name in enumerate(self.metrics):
            value = metrics.get(name)
            number = float(value) if isinstance(value, int | float) else math.nan
            present = math.isfinite(number)
            scaled = np.array([scale * number if present else 0.0])
            vector[head + 2 * i] = quantize(scaled, self.metrics_range, self.levels)[0]
            vector[head + 1 + 2 * i] = weight if present else 0
        arrays = reply.get(self.arrays_key)
        if not isinstance(arrays, ArrayRecord):
            raise MessageError(f"the train reply has no ArrayRecord {self.arrays_key!r}")
        if [(n, tuple(a.shape)) for n, a in arrays.items()] != [(n, s) for n, s, _ in self.spec]:
            raise MessageError(
                f"the train reply's arrays {[(n, a.shape) for n, a in arrays.items()]} do "
                f"not match the global arrays {[(n, s) for n, s, _ in self.spec]}"
            )
        deltas = []
        for (name, update), base in zip(arrays.items(), global_arrays.values(), strict=True):
            delta = update.reshape(-1).astype(np.float64)
            delta -= base.reshape(-1)
            # One pass instead of a mask: the float64 sum of values of real dtypes cannot
            # overflow, so it is finite exactly when every value is.
            if not math.isfinite(float(np.add.reduce(delta))):
                raise MessageError(f"the train reply's array {name!r} holds NaN or infinity")
            deltas.append(delta)
        if self.dp is not None:
            # Clip the whole update to C, then noise it: the noise covers what one node
            # can change, whatever the element range then cuts.
            clip_in_place(deltas, self.dp.clipping_norm)
            if self.dp.noise_stddev > 0.0:
                rng = rng if rng is not None else np.random.default_rng()
                for delta in deltas:
                    delta += rng.normal(0.0, self.dp.noise_stddev, size=delta.size)
            scale = 1.0
        start = head + 2 * len(self.metrics)
        for delta in deltas:
            np.clip(delta, -self.clipping_range, self.clipping_range, out=delta)
            if scale != 1.0:
                delta *= scale
            stop = start + delta.size
            quantize_in_place(delta, self.clipping_range, self.levels, vector[start:stop])
            start = stop
        return vector

    def decode(self, total: np.ndarray[Any, Any], global_arrays: ArrayRecord) -> RecordDict:
        """The content of one reply standing for the nodes whose vectors sum to ``total``:
        their weighted average arrays, weighted mean metrics and total weight.

        With a total weight of 0, the arrays are the global arrays and the weight 0.
        """
        weight = int(total[0])
        metrics = self._metrics(total)
        start = self._head + 2 * len(self.metrics)
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for name, base in global_arrays.items():
            if weight == 0:
                arrays[name] = base
                continue
            part = total[start : start + base.size]
            mean = dequantize(part, self.clipping_range, self.levels)
            mean *= self.max_weight / weight
            mean += base.reshape(-1)
            arrays[name] = _cast(mean.reshape(base.shape), base.dtype)
            start += base.size
        return RecordDict({self.arrays_key: ArrayRecord(arrays), self.metrics_key: metrics})

    def decode_sum(self, total: np.ndarray[Any, Any]) -> DecodedSum:
        """With :attr:`dp`: the sum of the clipped and noised deltas whose vectors sum to
        ``total``, how many they are, and their metrics.

        Raises
        ------
        ConfigError
            If the encoding has no :attr:`dp`.
        """
        if self.dp is None:
            raise ConfigError("decode_sum reads the sums of DP updates; this encoding has none")
        start = self._head + 2 * len(self.metrics)
        sums = []
        for _, shape, _ in self.spec:
            size = math.prod(shape)
            part = dequantize(total[start : start + size], self.clipping_range, self.levels)
            sums.append(part.reshape(shape))
            start += size
        return DecodedSum(int(total[1]), sums, self._metrics(total))

    def _metrics(self, total: np.ndarray[Any, Any]) -> MetricRecord:
        """The weighted mean metrics in ``total``, and the total weight."""
        metrics: dict[str, Any] = {self.weight_key: int(total[0])}
        head = self._head
        for i, name in enumerate(self.metrics):
            present = int(total[head + 1 + 2 * i])
            if present:
                value = dequantize(
                    total[head + 2 * i : head + 1 + 2 * i], self.metrics_range, self.levels
                )
                metrics[name] = float(value[0]) * self.max_weight / present
        return MetricRecord(metrics)


def _cast(values: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    cast: np.ndarray[Any, Any] = values.astype(dtype)
    return cast


def check_arrays(arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
    """Check that SecAgg+ can aggregate ``arrays``: real numbers only.

    Raises
    ------
    ConfigError
        Naming the first array of booleans, complex numbers or another non-real dtype.
    """
    for name, array in arrays.items():
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ConfigError(
                f"SecAgg+ aggregates real-valued arrays; {name!r} has dtype {array.dtype}"
            )
