from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.client import ClientApp
from corolla.core import (
    AggregationError,
    ArrayRecord,
    ConfigError,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from corolla.simulation import InlineExecutor, SimulationGrid
from corolla.strategy import (
    CONTROL_DELTA_KEY,
    CONTROL_KEY,
    Scaffold,
    ScaffoldAggregator,
    corrected_gradient,
    load_control,
    store_control,
    update_control,
)
from corolla.strategy._scaffold import scaffold_server_update

from .rounds import train_round

X = ArrayRecord({"w": np.array([1.0, 2.0]), "b": np.array([0.5])})
ZERO = ArrayRecord({"w": np.zeros(2), "b": np.zeros(1)})


def reply(y: ArrayRecord, delta: ArrayRecord, weight: int = 1) -> RecordDict:
    return RecordDict(
        {
            "arrays": y,
            CONTROL_DELTA_KEY: delta,
            "metrics": MetricRecord({"num-examples": weight}),
        }
    )


def record(w: list[float], b: float) -> ArrayRecord:
    return ArrayRecord({"w": np.array(w), "b": np.array([b])})


# Client-side helpers


def test_update_control_is_option_two_of_the_paper() -> None:
    y = record([0.0, 1.0], 0.5)
    c = record([0.1, 0.1], 0.1)
    ci = record([0.3, -0.2], 0.0)

    new, delta = update_control(X, y, c, ci, num_steps=4, learning_rate=0.25)

    # c_i+ = c_i - c + (x - y) / (K lr) = c_i - c + (x - y)
    assert new["w"].tolist() == pytest.approx([0.3 - 0.1 + 1.0, -0.2 - 0.1 + 1.0])
    assert new["b"].tolist() == pytest.approx([-0.1])
    for name in X:
        np.testing.assert_allclose(delta[name], new[name] - ci[name])


def test_corrected_gradient_is_grad_minus_local_plus_server_control() -> None:
    grad = {"w": np.array([1.0, 1.0], np.float32), "b": np.array([2.0], np.float32)}

    out = corrected_gradient(grad, record([0.5, 0.0], 1.0), record([0.25, 1.0], 0.0))

    assert out["w"].tolist() == [1.25, 0.0] and out["w"].dtype == np.float32
    assert out["b"].tolist() == [3.0]


def test_the_node_control_lives_in_the_context_state() -> None:
    context = Context(1, 7, {}, {})

    first = load_control(context, X)
    store_control(context, record([1.0, 2.0], 3.0))

    assert first == ZERO
    assert load_control(context, X) == record([1.0, 2.0], 3.0)


def test_invalid_client_inputs_are_rejected() -> None:
    with pytest.raises(ConfigError):
        update_control(X, X, ZERO, ZERO, num_steps=0, learning_rate=0.1)
    with pytest.raises(ConfigError):
        corrected_gradient({"w": np.zeros(2)}, ZERO, ZERO)


# Server side: the aggregator and the step

deltas = st.lists(
    st.tuples(
        hnp.arrays(np.float64, (2,), elements=st.floats(-4, 4)),
        hnp.arrays(np.float64, (2,), elements=st.floats(-4, 4)),
    ),
    max_size=5,
)
GLOBAL = ArrayRecord({"w": np.zeros(2)})


def fold(
    items: list[tuple[np.ndarray, np.ndarray]],
    start: int = 1,
    *,
    weighted: bool = False,
    weights: list[int] | None = None,
) -> ScaffoldAggregator:
    aggregator = ScaffoldAggregator(GLOBAL, GLOBAL, weighted=weighted)
    for i, (y, d) in enumerate(items):
        weight = weights[i] if weights is not None else 1
        aggregator.add(reply(ArrayRecord({"w": y}), ArrayRecord({"w": d}), weight), start + i)
    return aggregator


@given(deltas, deltas, st.booleans(), st.data())
def test_merge_equals_folding_one_after_the_other(
    first: list[tuple[np.ndarray, np.ndarray]],
    second: list[tuple[np.ndarray, np.ndarray]],
    weighted: bool,
    data: st.DataObject,
) -> None:
    weights = data.draw(st.lists(st.integers(0, 100), min_size=len(first + second)))
    head, tail = weights[: len(first)], weights[len(first) : len(first + second)]
    folded = fold(first + second, weighted=weighted, weights=weights)
    merged = fold(first, weighted=weighted, weights=head)
    other = fold(second, start=len(first) + 1, weighted=weighted, weights=tail)
    merged.merge(pickle.loads(pickle.dumps(other)))

    assert merged.count == folded.count
    assert merged.weight_sum == folded.weight_sum
    a, b = folded.sums(), merged.sums()
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        for x, y in zip(a[0] + a[1], b[0] + b[1], strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def test_server_step_by_hand() -> None:
    strategy = Scaffold(num_nodes=4, server_learning_rate=0.5)
    replies = [
        (1, reply(record([3.0, 2.0], 0.5), record([1.0, 0.0], 4.0))),
        (2, reply(record([1.0, 4.0], 1.5), record([3.0, 2.0], 0.0))),
    ]

    arrays, _, messages = train_round(strategy, 1, X, replies)

    # x + 0.5 * (mean(y) - x): mean(y) = ([2, 3], 1) -> ([1.5, 2.5], 0.75)
    assert arrays == record([1.5, 2.5], 0.75)
    # c = 0 + sum(delta) / N = ([4, 2], 4) / 4
    assert strategy.control == record([1.0, 0.5], 1.0)
    assert all(m.content[CONTROL_KEY] == ZERO for m in messages)
    assert all(m.content["arrays"] == X for m in messages)


def test_weighted_server_step_by_hand() -> None:
    strategy = Scaffold(num_nodes=4, server_learning_rate=0.5, weighted=True)
    replies = [
        (1, reply(record([3.0, 2.0], 0.5), record([1.0, 0.0], 4.0), weight=1)),
        (2, reply(record([1.0, 4.0], 1.5), record([3.0, 2.0], 0.0), weight=3)),
    ]

    arrays, metrics, _ = train_round(strategy, 1, X, replies)

    # weighted mean(y) = (1 * y1 + 3 * y2) / 4 = ([1.5, 3.5], 1.25);
    # x + 0.5 * (mean - x) = ([1.25, 2.75], 0.875)
    assert arrays == record([1.25, 2.75], 0.875)
    # weighted mean(delta) = ([10, 6], 4) / 4; c = 0 + |S| / N * mean = 2 / 4 * mean
    assert strategy.control == record([1.25, 0.75], 0.5)
    assert metrics["num-examples"] == 4


def test_weighted_round_whose_replies_all_weigh_zero_keeps_x_and_c() -> None:
    strategy = Scaffold(num_nodes=2, weighted=True)
    train_round(strategy, 1, X, [(1, reply(X, record([2.0, 2.0], 2.0)))])
    control = strategy.control

    arrays, _, _ = train_round(
        strategy, 2, X, [(1, reply(ZERO, record([1.0, 1.0], 1.0), weight=0))]
    )

    assert arrays == X and strategy.control == control


def test_weighted_and_unweighted_sums_do_not_merge() -> None:
    weighted = fold([(np.ones(2), np.ones(2))], weighted=True)

    with pytest.raises(AggregationError, match="weighted"):
        weighted.merge(fold([(np.ones(2), np.ones(2))], start=2))


vectors = hnp.arrays(np.float64, (3,), elements=st.floats(-100, 100))


@given(
    st.lists(st.tuples(vectors, vectors), min_size=1, max_size=5),
    vectors,
    vectors,
    st.integers(1, 10),
    st.floats(0.1, 2.0),
)
def test_unit_weights_give_the_papers_step_exactly(
    replies: list[tuple[np.ndarray, np.ndarray]],
    x: np.ndarray,
    c: np.ndarray,
    extra_nodes: int,
    lr: float,
) -> None:
    n = len(replies) + extra_nodes
    sum_y = np.sum([y for y, _ in replies], axis=0)
    sum_d = np.sum([d for _, d in replies], axis=0)

    [new_x], [new_c] = scaffold_server_update(
        [x], [c], [sum_y], [sum_d], len(replies), float(len(replies)), n, lr
    )

    assert np.array_equal(new_x, x + lr * (sum_y / len(replies) - x))
    assert np.array_equal(new_c, c + sum_d / n)


def _weighted_round(
    items: list[tuple[np.ndarray, np.ndarray]], weights: list[int], *, num_nodes: int
) -> tuple[ArrayRecord, ArrayRecord | None]:
    strategy = Scaffold(num_nodes=num_nodes, weighted=True)
    replies = [
        (i, reply(ArrayRecord({"w": y}), ArrayRecord({"w": d}), weight))
        for i, ((y, d), weight) in enumerate(zip(items, weights, strict=True), start=1)
    ]
    arrays, _, _ = train_round(strategy, 1, GLOBAL, replies)
    return arrays, strategy.control


@given(
    st.lists(st.tuples(vectors.map(lambda v: v[:2]), vectors.map(lambda v: v[:2])), min_size=1),
    st.integers(1, 50),
    st.integers(0, 3),
)
def test_weighted_with_equal_weights_is_unweighted(
    items: list[tuple[np.ndarray, np.ndarray]], weight: int, extra_nodes: int
) -> None:
    n = len(items) + extra_nodes
    replies = [
        (i, reply(ArrayRecord({"w": y}), ArrayRecord({"w": d}), weight))
        for i, (y, d) in enumerate(items, start=1)
    ]
    plain = Scaffold(num_nodes=n)

    expected, _, _ = train_round(plain, 1, GLOBAL, replies)
    got, control = _weighted_round(items, [weight] * len(items), num_nodes=n)

    assert plain.control is not None and control is not None
    np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(control["w"], plain.control["w"], rtol=1e-12, atol=1e-12)


@given(
    st.lists(
        st.tuples(vectors.map(lambda v: v[:2]), vectors.map(lambda v: v[:2]), st.integers(0, 50)),
        min_size=1,
    ),
    st.integers(2, 7),
)
def test_weighted_step_depends_on_the_weights_proportions_only(
    items: list[tuple[np.ndarray, np.ndarray, int]], scale: int
) -> None:
    updates = [(y, d) for y, d, _ in items]
    weights = [w for _, _, w in items]
    if sum(weights) == 0:
        weights[0] = 1

    x1, c1 = _weighted_round(updates, weights, num_nodes=len(items))
    x2, c2 = _weighted_round(updates, [scale * w for w in weights], num_nodes=len(items))

    assert c1 is not None and c2 is not None
    np.testing.assert_allclose(x1["w"], x2["w"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(c1["w"], c2["w"], rtol=1e-12, atol=1e-9)


@given(st.data(), st.integers(1, 5), st.integers(1, 4))
def test_with_every_node_replying_weighted_control_is_the_weighted_mean_of_node_controls(
    data: st.DataObject, num_nodes: int, num_rounds: int
) -> None:
    sizes = data.draw(st.lists(st.integers(1, 100), min_size=num_nodes, max_size=num_nodes))
    strategy = Scaffold(num_nodes=num_nodes, weighted=True)
    node_controls = [np.zeros(2) for _ in range(num_nodes)]

    for server_round in range(1, num_rounds + 1):
        replies = []
        for node in range(num_nodes):
            delta = data.draw(vectors.map(lambda v: v[:2]))
            node_controls[node] = node_controls[node] + delta
            content = reply(GLOBAL, ArrayRecord({"w": delta}), sizes[node])
            replies.append((node + 1, content))
        train_round(strategy, server_round, GLOBAL, replies, num_nodes=num_nodes)

    assert strategy.control is not None
    expected = np.average(node_controls, axis=0, weights=sizes)
    np.testing.assert_allclose(strategy.control["w"], expected, rtol=1e-9, atol=1e-9)


def test_the_control_is_sent_next_round_and_saved_in_the_state() -> None:
    strategy = Scaffold(num_nodes=2)
    train_round(strategy, 1, X, [(1, reply(X, record([2.0, 2.0], 2.0)))])

    _, _, messages = train_round(strategy, 2, X, [])
    state = strategy.state_dict()
    restored = Scaffold(num_nodes=2)
    restored.load_state_dict(state)

    assert messages[0].content[CONTROL_KEY] == record([1.0, 1.0], 1.0)
    assert restored.control == strategy.control
    with pytest.raises(ConfigError):
        restored.load_state_dict(RecordDict({"m": X}))


# End to end: SCAFFOLD on quadratics, with node controls kept in context.state

TARGETS = {1: np.array([1.0, -1.0]), 2: np.array([3.0, 0.0]), 3: np.array([-2.0, 4.0])}
STEPS, LR = 5, 0.1


def scaffold_app(sizes: dict[int, int] | None = None) -> ClientApp:
    """Node i minimizes ``|w - TARGETS[i]|^2 / 2`` and reports ``sizes[i]`` examples (1)."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        x = message.content["arrays"]
        c = message.content[CONTROL_KEY]
        ci = load_control(context, x)
        target = TARGETS[context.node_id]
        y = {"w": np.array(x["w"], dtype=np.float64)}
        for _ in range(STEPS):
            grad = corrected_gradient({"w": y["w"] - target}, c, ci)
            y["w"] = y["w"] - LR * grad["w"]
        new_ci, delta = update_control(x, ArrayRecord(y), c, ci, STEPS, LR)
        store_control(context, new_ci)
        content = {
            "arrays": ArrayRecord(y),
            CONTROL_DELTA_KEY: delta,
            "metrics": MetricRecord({"num-examples": (sizes or {}).get(context.node_id, 1)}),
        }
        return Message(RecordDict(content), reply_to=message)

    return app


def test_server_control_is_the_mean_of_node_controls_and_training_converges() -> None:
    grid = SimulationGrid(InlineExecutor(scaffold_app()), 3)
    strategy = Scaffold(fraction_train=0.67, fraction_evaluate=0.0, seed=0)
    initial = ArrayRecord({"w": np.zeros(2)})

    result = strategy.start(grid, initial, num_rounds=30)

    controls = [load_control(Context(1, n, {}, {}, grid.state_of(n)), initial) for n in (1, 2, 3)]
    assert strategy.control is not None
    np.testing.assert_allclose(
        strategy.control["w"], np.mean([c["w"] for c in controls], axis=0), atol=1e-12
    )
    optimum = np.mean(list(TARGETS.values()), axis=0)
    np.testing.assert_allclose(result.arrays["w"], optimum, atol=1e-3)


def test_weighted_scaffold_converges_to_the_size_weighted_optimum() -> None:
    sizes = {1: 1, 2: 3, 3: 6}
    grid = SimulationGrid(InlineExecutor(scaffold_app(sizes)), 3)
    strategy = Scaffold(weighted=True, fraction_evaluate=0.0, seed=0)
    initial = ArrayRecord({"w": np.zeros(2)})

    result = strategy.start(grid, initial, num_rounds=30)

    weights = [sizes[n] for n in (1, 2, 3)]
    controls = [load_control(Context(1, n, {}, {}, grid.state_of(n)), initial) for n in (1, 2, 3)]
    assert strategy.control is not None
    np.testing.assert_allclose(
        strategy.control["w"],
        np.average([c["w"] for c in controls], axis=0, weights=weights),
        atol=1e-12,
    )
    optimum = np.average(list(TARGETS.values()), axis=0, weights=weights)
    np.testing.assert_allclose(result.arrays["w"], optimum, atol=1e-3)


def test_the_defaults_are_the_papers() -> None:
    assert Scaffold().weighted is False


def test_invalid_options_are_rejected() -> None:
    for options in ({"server_learning_rate": 0.0}, {"num_nodes": 0}):
        with pytest.raises(ConfigError):
            Scaffold(**options)  # type: ignore[arg-type]
