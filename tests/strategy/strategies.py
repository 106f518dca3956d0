"""Hypothesis strategies shared by the strategy tests: array layouts, updates and weights."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import ArrayRecord, MetricRecord, RecordDict

F8 = np.dtype("<f8")

#: Dtypes whose weighted average of identical updates comes back exactly: float64 sums
#: hold them with room to spare, so rounding the mean back to the dtype lands on the update.
EXACT_DTYPES = [
    np.dtype(s) for s in ("<f2", "<f4", "<c8", "|i1", "<i2", "<i4", "|u1", "<u2", "<u4", "|b1")
]

#: Real floating dtypes, for properties that hold up to rounding.
FLOAT_DTYPES = [np.dtype(s) for s in ("<f2", "<f4", "<f8")]

#: Every dtype an update may have (64-bit integers only with values float64 holds exactly).
UPDATE_DTYPES = [*EXACT_DTYPES, F8, np.dtype("<c16"), np.dtype("<i8"), np.dtype("<u8")]

#: Magnitude bound for 64-bit floats: sums of a few weighted updates stay finite.
F8_BOUND = 1e300

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


def elements(dtype: np.dtype[Any], *, integral: bool = False) -> st.SearchStrategy[Any]:
    """Finite elements of ``dtype``; ``integral`` keeps them small whole numbers, whose
    weighted sums with integer weights float64 holds exactly."""
    if dtype.kind == "b":
        return st.booleans()
    if integral:
        if dtype.kind in "fc":
            return st.integers(-1000, 1000).map(float)
        info = np.iinfo(dtype)
        return st.integers(max(int(info.min), -1000), min(int(info.max), 1000))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(max(int(info.min), -(2**31)), min(int(info.max), 2**31))
    if dtype.kind == "f":
        bound = F8_BOUND if dtype.itemsize == 8 else None
        return st.floats(
            min_value=None if bound is None else -bound,
            max_value=bound,
            allow_nan=False,
            allow_infinity=False,
            width=8 * dtype.itemsize,
        )
    part = elements(np.dtype(f"<f{dtype.itemsize // 2}"))
    return st.builds(complex, part, part)


#: A layout: ``[(name, shape, dtype), ...]``.
Layout = list[tuple[str, tuple[int, ...], np.dtype[Any]]]


@st.composite
def layouts(
    draw: st.DrawFn, dtypes: list[np.dtype[Any]] = UPDATE_DTYPES, max_arrays: int = 3
) -> Layout:
    kinds = draw(st.lists(st.sampled_from(dtypes), min_size=1, max_size=max_arrays))
    return [(f"layer{i}", draw(shapes), dt) for i, dt in enumerate(kinds)]


@st.composite
def updates(draw: st.DrawFn, layout: Layout, *, integral: bool = False) -> ArrayRecord:
    """An :class:`ArrayRecord` with ``layout``."""
    return ArrayRecord(
        (name, draw(hnp.arrays(dt, shape, elements=elements(dt, integral=integral))))
        for name, shape, dt in layout
    )


#: Reply weights: whole numbers, or reals far from under- and overflow.
weights = st.one_of(st.integers(0, 1000), st.floats(1e-3, 1e6))
integer_weights = st.integers(0, 1000)


def positive_total(ws: list[float]) -> bool:
    return sum(ws) > 0


def reply(arrays: ArrayRecord | None, weight: float, **metrics: Any) -> RecordDict:
    """Reply content as FedAvg expects it."""
    records: dict[str, Any] = {"metrics": MetricRecord({"num-examples": weight, **metrics})}
    if arrays is not None:
        records["arrays"] = arrays
    return RecordDict(records)


#: Dtypes of the aggregator conformance suite: every kind of array a reply may carry.
CONFORMANCE_DTYPES = [*EXACT_DTYPES, F8]

#: One reply as the grid hands it to an aggregator: ``(node id, content)``.
NodeReply = tuple[int, RecordDict]


def full_reply(
    arrays: ArrayRecord, control_delta: ArrayRecord, weight: int, loss: int, accuracy: int
) -> RecordDict:
    """Reply content holding what any aggregator of the package reads: updated arrays,
    metrics (weight, training loss, one more metric) and SCAFFOLD's control delta."""
    metrics = MetricRecord({"num-examples": weight, "train_loss": loss, "acc": accuracy})
    return RecordDict({"arrays": arrays, "metrics": metrics, "control-delta": control_delta})


@st.composite
def federated_rounds(
    draw: st.DrawFn, dtypes: list[np.dtype[Any]] = CONFORMANCE_DTYPES, max_replies: int = 6
) -> tuple[ArrayRecord, list[NodeReply]]:
    """The global arrays of a round and its replies from nodes ``1..n``, every value a
    small whole number: every sum an aggregator takes of them is exact, whatever the order
    or grouping of its terms."""
    layout = draw(layouts(dtypes))
    global_arrays = draw(updates(layout, integral=True))
    replies = []
    for node_id in range(1, draw(st.integers(1, max_replies)) + 1):
        arrays = draw(updates(layout, integral=True))
        # SCAFFOLD's control delta is float64, shaped like the arrays; derived from the
        # update rather than drawn, which would double the cost of every example.
        control_delta = ArrayRecord(
            (name, np.asarray(a.real, np.float64) - node_id) for name, a in arrays.items()
        )
        metrics = (draw(integer_weights), draw(st.integers(0, 100)), draw(st.integers(-100, 100)))
        replies.append((node_id, full_reply(arrays, control_delta, *metrics)))
    return global_arrays, replies
