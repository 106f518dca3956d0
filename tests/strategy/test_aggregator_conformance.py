"""Every aggregator of ``corolla.strategy`` against the contract of ``corolla.server.Aggregator``.

Each aggregator is described once, as a :class:`Kind` (how to make one for a round, how to
observe all it shows, which replies it must refuse); every property below runs against
every kind. Replies hold small whole numbers (``federated_rounds``), so every sum is exact
and results can be compared bit for bit: merging equals folding, and the order of folding
does not matter, exactly.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corolla.core import (
    AggregationError,
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    RecordDict,
)
from corolla.server import Aggregator
from corolla.strategy import (
    CONTROL_DELTA_KEY,
    AllUpdates,
    QFedAvgAggregator,
    ScaffoldAggregator,
    WeightedAverage,
    array_spec,
)
from corolla.strategy._metrics import WeightedMetrics

from .strategies import CONFORMANCE_DTYPES, NodeReply, federated_rounds

# Observing an aggregator


def frozen(value: Any) -> Any:
    """``value`` in a form compared exactly by ``==``: arrays by dtype, shape and bytes."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, ArrayRecord):
        return ("ArrayRecord", tuple((name, frozen(a)) for name, a in value.items()))
    if isinstance(value, Mapping):
        return (type(value).__name__, tuple((k, frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(frozen(v) for v in value)
    return value


def _or_error(method: Callable[[], Any]) -> Any:
    try:
        return method()
    except AggregationError as exc:
        return ("AggregationError", str(exc))


def observe_weighted_average(aggregator: WeightedAverage) -> Any:
    options = (aggregator.arrays_key, aggregator.metrics_key, aggregator.weight_key)
    return frozen(
        [
            options,
            aggregator.precision,
            aggregator.spec,
            aggregator.count,
            aggregator.total_weight,
            _or_error(aggregator.arrays),
            aggregator.metrics(),
        ]
    )


def observe_weighted_metrics(aggregator: WeightedMetrics) -> Any:
    options = (aggregator.metrics_key, aggregator.weight_key)
    return frozen([options, aggregator.count, aggregator.total_weight, aggregator.metrics()])


def observe_qfedavg(aggregator: QFedAvgAggregator) -> Any:
    options = (
        aggregator.global_arrays,
        aggregator.q,
        aggregator.lipschitz,
        aggregator.arrays_key,
        aggregator.metrics_key,
        aggregator.weight_key,
        aggregator.loss_key,
    )
    return frozen([options, aggregator.count, aggregator.arrays(), aggregator.metrics()])


def observe_scaffold(aggregator: ScaffoldAggregator) -> Any:
    options = (
        aggregator.arrays_key,
        aggregator.control_delta_key,
        aggregator.metrics_key,
        aggregator.weight_key,
        aggregator.weighted,
    )
    return frozen(
        [
            options,
            aggregator.count,
            aggregator.weight_sum,
            aggregator.sums(),
            aggregator.metrics(),
        ]
    )


def observe_all_updates(aggregator: AllUpdates) -> Any:
    options = (aggregator.arrays_key, aggregator.metrics_key, aggregator.weight_key)
    return frozen(
        [options, aggregator.spec, aggregator.count, aggregator.updates(), aggregator.metrics()]
    )


# Replies an aggregator must refuse


@dataclasses.dataclass(frozen=True)
class Refused:
    """A reply to refuse; ``match`` is a pattern its error must contain; a ``layout``
    refusal needs a known layout (a fixed spec, or a reply folded before)."""

    content: RecordDict
    match: str | None = None
    layout: bool = False


def _with(content: RecordDict, **records: Any) -> RecordDict:
    return RecordDict({**dict(content), **records})


def _without(content: RecordDict, key: str) -> RecordDict:
    return RecordDict((k, v) for k, v in content.items() if k != key)


def _metrics_with(content: RecordDict, **values: Any) -> RecordDict:
    return _with(content, metrics=MetricRecord({**dict(content["metrics"]), **values}))


def refused_metrics(content: RecordDict) -> dict[str, Refused]:
    """Replies whose metrics no aggregator may fold (every one weighs replies)."""
    weightless = MetricRecord((k, v) for k, v in content["metrics"].items() if k != "num-examples")
    return {
        "no metrics": Refused(_without(content, "metrics")),
        "metrics not a MetricRecord": Refused(
            _with(content, metrics=ConfigRecord(dict(content["metrics"])))
        ),
        "no weight": Refused(_with(content, metrics=weightless), "num-examples"),
        "negative weight": Refused(_metrics_with(content, **{"num-examples": -1}), "weight"),
        "NaN weight": Refused(_metrics_with(content, **{"num-examples": math.nan}), "weight"),
        "infinite weight": Refused(_metrics_with(content, **{"num-examples": math.inf}), "weight"),
        "list weight": Refused(_metrics_with(content, **{"num-examples": [1, 2]}), "weight"),
        "NaN metric": Refused(_metrics_with(content, acc=math.nan), "acc"),
        "infinite metric": Refused(_metrics_with(content, acc=-math.inf), "acc"),
    }


def _retyped(a: np.ndarray) -> np.ndarray:
    """An array shaped like ``a`` of another dtype."""
    return np.zeros(a.shape, np.int16 if a.dtype.kind in "fc" else np.float32)


def refused_arrays(content: RecordDict, key: str) -> dict[str, Refused]:
    """Replies whose ArrayRecord ``key`` is missing, of another layout, or not finite."""
    arrays: ArrayRecord = content[key]
    names = list(arrays)
    first, last = names[0], names[-1]

    def changed(new: ArrayRecord) -> RecordDict:
        return _with(content, **{key: new})

    out = {
        f"no {key}": Refused(_without(content, key), key),
        f"{key} not an ArrayRecord": Refused(
            _with(content, **{key: MetricRecord({"w": 1.0})}), key
        ),
        f"extra array in {key}": Refused(
            changed(arrays | {"extra": np.zeros(1)}), "extra", layout=True
        ),
        f"array missing from {key}": Refused(
            changed(ArrayRecord((n, a) for n, a in arrays.items() if n != last)), layout=True
        ),
        f"renamed array in {key}": Refused(
            changed(ArrayRecord((n + "!" if n == first else n, a) for n, a in arrays.items())),
            layout=True,
        ),
        f"reshaped array in {key}": Refused(
            changed(arrays | {first: np.stack([arrays[first]] * 2)}), "shape", layout=True
        ),
        f"array of another dtype in {key}": Refused(
            changed(arrays | {first: _retyped(arrays[first])}),
            "dtype",
            layout=True,
        ),
    }
    if len(names) > 1:
        out[f"reordered arrays in {key}"] = Refused(
            changed(ArrayRecord(reversed(list(arrays.items())))), layout=True
        )
    if arrays[first].ndim != 1 and arrays[first].size > 1:
        out[f"flattened array in {key}"] = Refused(
            changed(arrays | {first: arrays[first].reshape(-1)}), "shape", layout=True
        )
    # The last array that can hold NaN: an aggregator folding arrays one by one has folded
    # the others by the time it finds it, and must take them back.
    floats = [n for n, a in arrays.items() if a.dtype.kind in "fc" and a.size]
    if floats:
        name = floats[-1]
        for label, bad in [("NaN", np.nan), ("infinity", np.inf), ("-infinity", -np.inf)]:
            poisoned = arrays[name].copy()
            poisoned.reshape(-1)[-1] = bad
            out[f"{label} in {key}"] = Refused(
                changed(arrays | {name: poisoned}), re.escape(f"{name!r} holds NaN")
            )
    return out


def refused_loss(content: RecordDict) -> dict[str, Refused]:
    """Replies without a finite, non-negative training loss (q-FedAvg needs one)."""
    lossless = MetricRecord((k, v) for k, v in content["metrics"].items() if k != "train_loss")
    return {
        "no training loss": Refused(_with(content, metrics=lossless), "train_loss"),
        "negative training loss": Refused(_metrics_with(content, train_loss=-1), "train_loss"),
        "NaN training loss": Refused(_metrics_with(content, train_loss=math.nan), "train_loss"),
        "list training loss": Refused(_metrics_with(content, train_loss=[1.0]), "train_loss"),
    }


# The aggregators

#: The global arrays of a round and its replies.
Round = tuple[ArrayRecord, list[NodeReply]]


@dataclasses.dataclass(frozen=True)
class Kind:
    """One aggregator of the package, as the properties see it."""

    name: str
    #: A fresh aggregator for a round starting from the given global arrays.
    make: Callable[[ArrayRecord], Aggregator]
    #: Everything the aggregator shows, comparable exactly with ``==``.
    observe: Callable[[Any], Any]
    #: The replies it must refuse, derived from a valid one.
    refused: Callable[[RecordDict], dict[str, Refused]]
    #: Whether it learns the layout from the first reply (no spec given).
    learns_layout: bool = False
    #: The dtypes its replies' arrays may have.
    dtypes: tuple[np.dtype[Any], ...] = tuple(CONFORMANCE_DTYPES)

    def draw(self, data: st.DataObject) -> tuple[ArrayRecord, list[NodeReply], int]:
        """A round of replies this aggregator folds, and a point that splits them."""
        global_arrays, replies = data.draw(federated_rounds(list(self.dtypes)))
        return global_arrays, replies, data.draw(st.integers(0, len(replies)))

    def folded(self, global_arrays: ArrayRecord, replies: list[NodeReply]) -> Any:
        """What a new aggregator of the round shows once ``replies`` are folded in."""
        return self.observe(fold(self.make(global_arrays), replies))


def _arrays_and_metrics(content: RecordDict) -> dict[str, Refused]:
    return refused_metrics(content) | refused_arrays(content, "arrays")


KINDS = [
    Kind(
        "WeightedAverage",
        lambda g: WeightedAverage(spec=array_spec(g)),
        observe_weighted_average,
        _arrays_and_metrics,
    ),
    Kind(
        "WeightedAverage, native precision",
        lambda g: WeightedAverage(spec=array_spec(g), precision="native"),
        observe_weighted_average,
        _arrays_and_metrics,
    ),
    Kind(
        "WeightedAverage, layout from the first reply",
        lambda g: WeightedAverage(),
        observe_weighted_average,
        _arrays_and_metrics,
        learns_layout=True,
    ),
    Kind(
        "WeightedMetrics",
        lambda g: WeightedMetrics(),
        observe_weighted_metrics,
        refused_metrics,
    ),
    Kind(
        # q = 0 and L = 1 make every term a whole number, so sums stay exact.
        "QFedAvgAggregator",
        lambda g: QFedAvgAggregator(g, q=0.0, lipschitz=1.0),
        observe_qfedavg,
        lambda c: _arrays_and_metrics(c) | refused_loss(c),
        # q-FedAvg's maths are real: complex arrays lose their imaginary part.
        dtypes=tuple(d for d in CONFORMANCE_DTYPES if d.kind != "c"),
    ),
    Kind(
        "ScaffoldAggregator",
        lambda g: ScaffoldAggregator(g, _control(g)),
        observe_scaffold,
        lambda c: _arrays_and_metrics(c) | refused_arrays(c, CONTROL_DELTA_KEY),
    ),
    Kind(
        "ScaffoldAggregator, weighted",
        lambda g: ScaffoldAggregator(g, _control(g), weighted=True),
        observe_scaffold,
        lambda c: _arrays_and_metrics(c) | refused_arrays(c, CONTROL_DELTA_KEY),
    ),
    Kind(
        "AllUpdates",
        lambda g: AllUpdates(spec=array_spec(g)),
        observe_all_updates,
        _arrays_and_metrics,
    ),
    Kind(
        "AllUpdates, layout from the first reply",
        lambda g: AllUpdates(),
        observe_all_updates,
        _arrays_and_metrics,
        learns_layout=True,
    ),
]


def _control(global_arrays: ArrayRecord) -> ArrayRecord:
    return ArrayRecord((n, np.zeros(a.shape, np.float64)) for n, a in global_arrays.items())


def every_kind(test: Callable[[Kind, st.DataObject], None]) -> Any:
    """Run the property ``test(kind, data)`` against every kind. Half Hypothesis's default
    examples per kind keeps the suite's time that of a few property tests per aggregator."""
    property_test = settings(max_examples=50)(given(st.data())(test))
    return pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])(property_test)


def fold(aggregator: Any, replies: list[NodeReply]) -> Any:
    for node_id, content in replies:
        aggregator.add(content, node_id)
    return aggregator


def arrays_in(value: Any, seen: set[int] | None = None) -> Iterator[np.ndarray]:
    """Every NumPy array reachable from ``value`` through attributes, records and
    containers."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from arrays_in(item, seen)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from arrays_in(item, seen)
    elif hasattr(value, "__dict__") and type(value).__module__.startswith("corolla"):
        yield from arrays_in(vars(value), seen)


def shares_memory(first: Any, second: Any, *, apart_from: Any = None) -> bool:
    """Whether an array of ``first`` shares memory with one of ``second`` that
    ``apart_from`` (e.g. the settings both hold) does not hold."""
    excluded = list(arrays_in(apart_from)) if apart_from is not None else []
    theirs = [b for b in arrays_in(second) if not any(np.shares_memory(b, x) for x in excluded)]
    return any(np.shares_memory(a, b) for a in arrays_in(first) for b in theirs)


# Properties


@every_kind
def test_empty_has_nothing_folded_and_the_same_settings(kind: Kind, data: st.DataObject) -> None:
    # Arrange: an aggregator with some replies folded
    global_arrays, replies, cut = kind.draw(data)
    aggregator = fold(kind.make(global_arrays), replies[:cut])
    before = kind.observe(aggregator)

    # Act
    empty = aggregator.empty()

    # Assert: nothing folded, and it folds as a new aggregator of the round does (a
    # learned layout is kept: that is a setting too)
    assert empty.count == 0
    assert type(empty) is type(aggregator)
    if cut == 0 or not kind.learns_layout:
        assert kind.observe(empty) == kind.observe(kind.make(global_arrays))
    assert kind.observe(fold(empty, replies)) == kind.folded(global_arrays, replies)
    assert kind.observe(aggregator) == before


@every_kind
def test_merge_equals_folding_the_others_replies(kind: Kind, data: st.DataObject) -> None:
    # Arrange: the replies split between a root and a worker, which gets an empty() copy
    # through pickle as a simulation worker does, or is made like the root
    global_arrays, replies, cut = kind.draw(data)
    root = fold(kind.make(global_arrays), replies[:cut])
    if data.draw(st.booleans()):
        worker = pickle.loads(pickle.dumps(root.empty()))
    else:
        worker = kind.make(global_arrays)
    fold(worker, replies[cut:])

    # Act
    root.merge(pickle.loads(pickle.dumps(worker)))

    # Assert
    assert root.count == len(replies)
    assert kind.observe(root) == kind.folded(global_arrays, replies)


@every_kind
def test_merging_an_empty_aggregator_changes_nothing(kind: Kind, data: st.DataObject) -> None:
    global_arrays, replies, _ = kind.draw(data)
    aggregator = fold(kind.make(global_arrays), replies)
    before = kind.observe(aggregator)

    aggregator.merge(aggregator.empty())
    aggregator.merge(kind.make(global_arrays))

    assert kind.observe(aggregator) == before


@every_kind
def test_the_order_of_folding_does_not_matter(kind: Kind, data: st.DataObject) -> None:
    global_arrays, replies, _ = kind.draw(data)
    shuffled = data.draw(st.permutations(replies))

    assert kind.folded(global_arrays, shuffled) == kind.folded(global_arrays, replies)


@every_kind
def test_a_refused_reply_raises_and_leaves_the_aggregator_unchanged(
    kind: Kind, data: st.DataObject
) -> None:
    global_arrays, replies, cut = kind.draw(data)
    expected = kind.folded(global_arrays, replies)
    for name, refusal in kind.refused(replies[0][1]).items():
        if refusal.layout and kind.learns_layout and cut == 0:
            continue  # the first reply sets the layout: any layout is accepted
        # Arrange
        aggregator = fold(kind.make(global_arrays), replies[:cut])
        before = kind.observe(aggregator)

        # Act
        with pytest.raises(AggregationError, match=refusal.match) as raised:
            aggregator.add(refusal.content, 99)

        # Assert: unchanged, and it goes on as if the reply had never come
        assert kind.observe(aggregator) == before, (name, raised.value)
        assert kind.observe(fold(aggregator, replies[cut:])) == expected, name


@every_kind
def test_a_pickled_aggregator_goes_on_like_the_original(kind: Kind, data: st.DataObject) -> None:
    global_arrays, replies, cut = kind.draw(data)
    original = fold(kind.make(global_arrays), replies[:cut])

    copy = pickle.loads(pickle.dumps(original))

    assert kind.observe(copy) == kind.observe(original)
    assert kind.observe(fold(copy, replies[cut:])) == kind.observe(fold(original, replies[cut:]))


@every_kind
def test_merge_keeps_no_reference_to_the_others_buffers(kind: Kind, data: st.DataObject) -> None:
    # Arrange: the other's buffers may be shared memory that is reused once merged
    global_arrays, replies, cut = kind.draw(data)
    aggregator = fold(kind.make(global_arrays), replies[:cut])
    other = fold(aggregator.empty(), replies[cut:])

    # Act
    aggregator.merge(other)
    merged = kind.observe(aggregator)

    # Assert: no array in common but the round's settings, and what the other does next
    # (folding more, in place) does not reach the merged aggregator
    assert not shares_memory(aggregator, other, apart_from=other.empty())
    fold(other, replies)
    assert kind.observe(aggregator) == merged


@every_kind
def test_add_keeps_no_reference_to_the_replys_buffers(kind: Kind, data: st.DataObject) -> None:
    # A runtime frees a reply's arrays (shared memory, received buffers) once it is folded.
    global_arrays, replies, _ = kind.draw(data)

    aggregator = fold(kind.make(global_arrays), replies)

    assert not shares_memory(aggregator, [content for _, content in replies])
