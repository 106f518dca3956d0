"""SecAgg+ around central DP: each node clips and noises its own update, the server sees
only their sum, and a round left with fewer nodes than the noise quorum is not unmasked."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corolla.client import ClientApp
from corolla.core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Context,
    Event,
    ExecutionError,
    Message,
    MessageError,
    MetricRecord,
    RecordDict,
)
from corolla.privacy import AdaptiveClipping, CentralDP, SecAggPlus, secaggplus_mod
from corolla.privacy._clipping import clip_update
from corolla.privacy._secagg_encoding import DPShare, Encoding, levels_for
from corolla.server import RunResult
from corolla.simulation import InlineExecutor, SimulationGrid
from corolla.strategy import FedAvg, array_spec

from .test_secagg import _context, _dropout, _no_next, _stage_message

NUM_NODES = 20
INITIAL = ArrayRecord({"w": np.zeros((40, 50), np.float32), "b": np.zeros(7)})
CLIPPING_NORM = 1.0


def _train(message: Message, context: Context) -> Message:
    """Node ``p`` moves every element by a seeded amount of up to ``0.02 (p + 1)``: the
    update norms range from below C to far above it."""
    pid = int(context.node_config["partition-id"])
    rng = np.random.default_rng(pid)
    arrays = ArrayRecord(
        (k, (v + 0.02 * (pid + 1) * rng.uniform(0.0, 1.0, v.shape)).astype(v.dtype))
        for k, v in message.content["arrays"].items()
    )
    metrics = MetricRecord({"num-examples": pid + 1, "loss": float(pid)})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


def _zero(message: Message, context: Context) -> Message:
    """No training: the update is zero, so what the round adds is the noise alone."""
    metrics = MetricRecord({"num-examples": 1})
    content = RecordDict({"arrays": message.content["arrays"], "metrics": metrics})
    return Message(content, reply_to=message)


def _app(train: Any, *mods: Any) -> ClientApp:
    app = ClientApp(mods=[_dropout, *mods])
    app.train()(train)
    return app


secure_app = _app(_train, secaggplus_mod)


def _dp(noise_multiplier: float, **options: Any) -> CentralDP:
    return CentralDP(
        FedAvg(fraction_evaluate=0.0, min_train_nodes=NUM_NODES, seed=0),
        noise_multiplier=noise_multiplier,
        clipping_norm=CLIPPING_NORM,
        clipping="client",
        delta=1e-3,
        **options,
    )


def _run(
    strategy: Any,
    app: ClientApp = secure_app,
    *,
    drop: tuple[str, list[int]] | None = None,
    events: list[Event] | None = None,
    rounds: int = 1,
) -> RunResult:
    config: dict[str, Any] = {}
    if drop is not None:
        config = {"drop-stage": drop[0], "drop-nodes": ",".join(map(str, drop[1]))}
    with InlineExecutor(app, run_config=config) as executor:
        sink = events.append if events is not None else None
        grid = SimulationGrid(executor, NUM_NODES, events=sink)
        return strategy.start(grid, INITIAL, num_rounds=rounds)


def _clipped_mean(nodes: range) -> dict[str, np.ndarray[Any, Any]]:
    """The exact DP-FedAvg mean without noise: each node's update clipped to C, summed with
    equal weights, over the nodes sampled."""
    total = [np.zeros(a.shape) for a in INITIAL.values()]
    for pid in nodes:
        rng = np.random.default_rng(pid)
        update = [
            (0.02 * (pid + 1) * rng.uniform(0.0, 1.0, a.shape)).astype(a.dtype).astype(np.float64)
            for a in INITIAL.values()
        ]
        clipped, _, _ = clip_update(update, CLIPPING_NORM)
        for t, c in zip(total, clipped, strict=True):
            t += c
    return {name: t / NUM_NODES for name, t in zip(INITIAL, total, strict=True)}


# The mechanism


def test_the_secure_dp_mean_is_the_clipped_mean_within_the_quantization_bound() -> None:
    # Arrange: a negligible noise, so the result is the clipped mean plus rounding
    strategy = SecAggPlus(
        _dp(1e-9), clipping_range=2.0, metrics=["loss"], metrics_range=20.0, max_weight=32, seed=1
    )

    # Act
    result = _run(strategy)

    # Assert: each element is off by at most n steps / 2 over the denominator n
    assert result.arrays is not None
    bound = NUM_NODES * (2.0 / levels_for(NUM_NODES)) / 2 / NUM_NODES + 1e-6
    expected = _clipped_mean(range(NUM_NODES))
    for name, mean in expected.items():
        assert np.max(np.abs(result.arrays[name] - mean)) <= bound
    # and not the unclipped mean: node 0's update (norm about 0.5) is within C, the
    # others' (about 0.5 (p + 1)) were clipped by their own mod
    unclipped = 0.02 * sum(p + 1 for p in range(NUM_NODES)) / NUM_NODES * 0.5
    assert abs(float(np.mean(result.arrays["w"])) - unclipped) > 0.05
    train = result.history.round(1).train
    assert train["loss"] == pytest.approx(sum(p * (p + 1) for p in range(20)) / 210, abs=1e-3)
    assert result.history.round(1).train_replies == NUM_NODES


def test_each_node_adds_its_share_and_the_sum_carries_the_full_noise() -> None:
    # Arrange: zero updates, z = 1 and C = 1, a quorum of half the 20 nodes: each node
    # adds 1 / sqrt(10), the sum of all 20 has sqrt(2), the mean sqrt(2) / 20
    strategy = SecAggPlus(_dp(1.0), clipping_range=3.0, noise_quorum=0.5, seed=2)
    events: list[Event] = []

    # Act
    result = _run(strategy, _app(_zero, secaggplus_mod), events=events)

    # Assert: 2007 elements give the sample stddev a relative error of 1.6%: 8% is five
    # standard errors away
    assert result.arrays is not None
    values = np.concatenate([a.reshape(-1) for a in result.arrays.values()])
    expected = math.sqrt(2.0) / NUM_NODES
    assert float(np.std(values)) == pytest.approx(expected, rel=0.08)
    assert result.history.round(1).train["dp-noise-stddev"] == pytest.approx(expected)
    # The nodes' noise came from the operating system, not from the strategy's seed
    again = _run(
        SecAggPlus(_dp(1.0), clipping_range=3.0, noise_quorum=0.5, seed=2),
        _app(_zero, secaggplus_mod),
    )
    assert again.arrays is not None and not np.allclose(again.arrays["w"], result.arrays["w"])
    privacy = [e for e in events if e.kind == "privacy"]
    assert privacy and privacy[-1].data["epsilon"] == strategy.strategy.epsilon()


def test_epsilon_is_accounted_as_for_central_dp_alone() -> None:
    # Arrange
    secure = SecAggPlus(_dp(1.0), clipping_range=3.0, seed=3)
    plain = _dp(1.0)

    # Act
    secured = _run(secure, rounds=2)
    central = _run(plain, _app(_train, secaggplus_mod), rounds=2)

    # Assert: a positive, growing epsilon each round, the same under both
    series = secured.history.series("server", "privacy-epsilon")
    assert [r for r, _ in series] == [1, 2]
    assert 0 < series[0][1] < series[1][1]
    assert series == central.history.series("server", "privacy-epsilon")


# Dropouts and the noise quorum


def test_a_round_keeping_the_quorum_survives_dropouts_at_masked_input() -> None:
    # Arrange: the quorum is 16 of 20; 3 nodes drop at masked input, 17 remain
    strategy = SecAggPlus(_dp(1e-9), clipping_range=2.0, seed=4)

    # Act
    result = _run(strategy, drop=("masked-input", [2, 3, 4]))

    # Assert: the clipped sum of the others over the fixed denominator of 20
    assert result.arrays is not None
    survivors = [p for p in range(NUM_NODES) if p + 1 not in (2, 3, 4)]
    expected = {n: np.zeros(a.shape) for n, a in INITIAL.items()}
    for p in survivors:
        for name, part in _clipped_mean(range(p, p + 1)).items():
            expected[name] += part
    for name, mean in expected.items():
        assert np.max(np.abs(result.arrays[name] - mean)) <= 1e-6
    assert result.history.round(1).train_replies == 17


@pytest.mark.parametrize("stage", ["setup", "share-keys", "masked-input"])
def test_a_round_below_the_noise_quorum_is_not_unmasked(stage: str) -> None:
    # Arrange: 5 of 20 nodes drop, leaving 15 of the quorum of 16
    events: list[Event] = []
    strategy = SecAggPlus(_dp(1.0), clipping_range=4.0, seed=5)

    # Act: a round aborted before the masked input tells its nodes, whose error replies
    # make a run of nothing else fail; one aborted at unmask keeps the arrays
    if stage == "masked-input":
        result = _run(strategy, drop=(stage, [3, 4, 5, 6, 7]), events=events, rounds=2)
        assert result.arrays is not None
        np.testing.assert_array_equal(result.arrays["w"], INITIAL["w"])
    else:
        with pytest.raises(ExecutionError, match="fewer than the 16 whose noise shares"):
            _run(strategy, drop=(stage, [3, 4, 5, 6, 7]), events=events, rounds=2)

    # Assert: every round aborts, naming the quorum
    aborts = [e for e in events if e.kind == "secagg.abort"]
    assert [e.round for e in aborts] == [1, 2]
    assert all("fewer than the 16 whose noise shares" in e.data["reason"] for e in aborts)


def test_a_node_refuses_to_unmask_fewer_vectors_than_the_noise_quorum() -> None:
    # Arrange: node 1 has sent its masked input in a round with a quorum of 3
    context = _context()
    state = {
        "stage": "masked-input",
        "run": 0,
        "round": 1,
        "senders": [2, 3],
        "shares": [b"", b""],
        "noise-quorum": 3,
    }
    context.state = RecordDict({"secaggplus": ConfigRecord(state)})
    asked = {"stage": "unmask", "dropped": [2], "survivors": [3], "survivors-total": 2}

    # Act / Assert: and it forgets the round's secrets
    with pytest.raises(MessageError, match="fewer than the noise quorum 3"):
        secaggplus_mod(_stage_message(asked), context, _no_next)
    assert "secaggplus" not in context.state
    context.state = RecordDict({"secaggplus": ConfigRecord(state)})
    unstated = {"stage": "unmask", "dropped": [2], "survivors": [3]}
    with pytest.raises(MessageError, match="an unstated number"):
        secaggplus_mod(_stage_message(unstated), context, _no_next)


# Settings


def test_settings_that_cannot_keep_the_guarantee_are_refused() -> None:
    with pytest.raises(ConfigError, match="clipping='client'"):
        SecAggPlus(
            CentralDP(FedAvg(), noise_multiplier=1.0, clipping_norm=1.0, delta=1e-5),
            clipping_range=2.0,
        )
    with pytest.raises(ConfigError, match="adaptive"):
        SecAggPlus(_dp(1.0, adaptive=AdaptiveClipping(clipped_count_stddev=1.0)))
    with pytest.raises(ConfigError, match="below the clipping norm"):
        SecAggPlus(_dp(1.0), clipping_range=0.5)
    with pytest.raises(ConfigError, match="noise_quorum"):
        SecAggPlus(_dp(1.0), noise_quorum=0.0)
    with pytest.raises(ConfigError, match=r"SecAggPlus\(CentralDP"):
        CentralDP(SecAggPlus(FedAvg()), noise_multiplier=1.0, clipping_norm=1.0, delta=1e-5)


# The encoding


def _reply(update: list[np.ndarray[Any, Any]]) -> RecordDict:
    arrays = ArrayRecord({f"a{i}": u for i, u in enumerate(update)})
    return RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 3, "loss": 0.5})})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-5.0, 5.0, allow_nan=False), min_size=6, max_size=6),
        min_size=1,
        max_size=8,
    ),
    st.floats(0.01, 3.0),
)
def test_the_decoded_sum_is_the_sum_of_the_clipped_updates(
    updates: list[list[float]], clipping_norm: float
) -> None:
    # Arrange: updates split into two arrays, no noise, a range that holds every
    # clipped element
    start = ArrayRecord({"a0": np.zeros(2), "a1": np.zeros(4)})
    n = len(updates)
    encoding = Encoding(
        clipping_range=clipping_norm,
        metrics_range=10.0,
        levels=levels_for(n),
        max_weight=8,
        metrics=("loss",),
        spec=tuple(array_spec(start)),
        dp=DPShare(clipping_norm, 0.0),
    )

    # Act
    total = np.zeros(encoding.length, np.uint32)
    for values in updates:
        update = [np.array(values[:2]), np.array(values[2:])]
        np.add(total, encoding.encode(_reply(update), start), out=total)
    decoded = encoding.decode_sum(total)

    # Assert: within n steps / 2 per element
    exact = [np.zeros(2), np.zeros(4)]
    for values in updates:
        clipped, _, _ = clip_update([np.array(values[:2]), np.array(values[2:])], clipping_norm)
        for e, c in zip(exact, clipped, strict=True):
            e += c
    step = clipping_norm / levels_for(n)
    for got, want in zip(decoded.sums, exact, strict=True):
        assert np.max(np.abs(got - want)) <= n * step / 2 + 1e-12
    assert decoded.count == n
    assert decoded.metrics["num-examples"] == 3 * n
    assert decoded.metrics["loss"] == pytest.approx(0.5, abs=1e-6)
