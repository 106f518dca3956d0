"""Reading replies: the names of their records, the layout their arrays must have, and the
checks of their arrays every aggregator runs before it folds a reply in (their metrics and
weight are checked by :class:`WeightedMetrics`, which every aggregator holds).

Each check raises :class:`AggregationError` and changes nothing, so an aggregator that
runs them all before touching its sums leaves itself unchanged when a reply is rejected.
"""

from __future__ import annotations

import dataclasses

from ..core import AggregationError, ArrayRecord, RecordDict
from ._kernels import all_finite

__all__ = [
    "ArraySpec",
    "RecordNames",
    "array_spec",
    "check_finite",
    "check_layout",
    "reply_arrays",
]

#: Names, shapes and dtypes an update must have: ``[(name, shape, dtype.str), ...]``.
ArraySpec = list[tuple[str, tuple[int, ...], str]]


def array_spec(arrays: ArrayRecord) -> ArraySpec:
    """The layout of ``arrays``, which every update must match."""
    return [(name, tuple(a.shape), a.dtype.str) for name, a in arrays.items()]


@dataclasses.dataclass
class RecordNames:
    """Names of the records in a strategy's messages and its nodes' replies."""

    #: The global arrays sent, and the updated arrays replied.
    arrays_key: str = "arrays"
    #: The replies' metrics.
    metrics_key: str = "metrics"
    #: The config sent with each message.
    config_key: str = "config"
    #: The metric that weighs a reply (its number of examples).
    weight_key: str = "num-examples"


def check_layout(arrays: ArrayRecord, spec: ArraySpec, key: str = "arrays") -> None:
    """Check that ``arrays`` (the record ``key`` of a reply) has the names, shapes and
    dtypes of ``spec``, in that order.

    Raises
    ------
    AggregationError
        If a name, a shape or a dtype differs.
    """
    names = list(arrays)
    expected = [name for name, _, _ in spec]
    if names != expected:
        raise AggregationError(f"{key!r} has arrays {names}, expected {expected}")
    for name, shape, dtype in spec:
        a = arrays[name]
        if tuple(a.shape) != shape:
            raise AggregationError(f"array {name!r} has shape {a.shape}, expected {shape}")
        if a.dtype.str != dtype:
            raise AggregationError(f"array {name!r} has dtype {a.dtype.str}, expected {dtype}")


def non_finite(name: str) -> AggregationError:
    """The error for an array ``name`` that holds NaN or infinity."""
    return AggregationError(f"array {name!r} holds NaN or infinity")


def check_finite(arrays: ArrayRecord) -> None:
    """Check that no array holds NaN or infinity.

    Raises
    ------
    AggregationError
        Naming the first array that does.
    """
    for name, a in arrays.items():
        if not all_finite(a):
            raise non_finite(name)


def reply_arrays(content: RecordDict, key: str, spec: ArraySpec | None = None) -> ArrayRecord:
    """The :class:`ArrayRecord` ``key`` of a reply, checked against ``spec`` if given.

    Raises
    ------
    AggregationError
        If the reply has no ArrayRecord ``key``, or it does not match ``spec``.
    """
    arrays = content.get(key)
    if not isinstance(arrays, ArrayRecord):
        raise AggregationError(f"reply has no ArrayRecord {key!r}")
    if spec is not None:
        check_layout(arrays, spec, key)
    return arrays
