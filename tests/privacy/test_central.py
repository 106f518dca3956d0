"""Central DP: clipping, noise, accounting and the budget, around averaging strategies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from corolla.client import ClientApp
from corolla.core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Context,
    ErrorCode,
    Event,
    Message,
    MetricRecord,
    RecordDict,
)
from corolla.privacy import CLIPPING_NORM_KEY, AdaptiveClipping, CentralDP, clipping_mod
from corolla.server import RunResult
from corolla.simulation import InlineExecutor, SimulationGrid
from corolla.strategy import (
    AttributeSelection,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    QFedAvg,
    Scaffold,
    Strategy,
)

from ..strategy.rounds import train_round
from ..strategy.test_checkpoint import CheckpointGrid, _Crash

INITIAL = ArrayRecord({"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float64)})


def reply(arrays: ArrayRecord, weight: int = 1, **metrics: Any) -> RecordDict:
    return RecordDict(
        {"arrays": arrays, "metrics": MetricRecord({"num-examples": weight, **metrics})}
    )


def shifted(arrays: ArrayRecord, by: float) -> ArrayRecord:
    return ArrayRecord((n, (a + by).astype(a.dtype)) for n, a in arrays.items())


def numpy_app(step: float = 0.5, *, mods: tuple[Any, ...] = ()) -> ClientApp:
    """Node ``pid`` moves every array by ``step * (pid + 1)``: update norm grows with pid."""
    app = ClientApp(mods=list(mods))

    @app.train()
    def train(message: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        arrays = shifted(message.content["arrays"], step * (pid + 1))
        metrics = MetricRecord({"num-examples": 10 * (pid + 1), "train-loss": float(pid)})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> RecordDict:
        return RecordDict({"metrics": MetricRecord({"num-examples": 1, "accuracy": 0.5})})

    return app


def simulate(
    strategy: Strategy,
    num_rounds: int,
    *,
    app: ClientApp | None = None,
    num_nodes: int = 4,
    events: list[Event] | None = None,
) -> RunResult:
    sink = events.append if events is not None else None
    grid = SimulationGrid(InlineExecutor(app or numpy_app()), num_nodes, events=sink)
    return strategy.start(grid, INITIAL, num_rounds)


# The mechanism


def test_the_noise_standard_deviation_is_the_multiplier_times_c_over_the_sampled_nodes() -> None:
    # Arrange: 4 nodes that return the global arrays (zero updates): what the round
    # adds is the noise alone, on 100 000 elements
    big = ArrayRecord({"w": np.zeros((200, 500))})
    strategy = CentralDP(FedAvg(seed=3), noise_multiplier=0.8, clipping_norm=2.0, delta=1e-5)

    # Act
    new, metrics, _ = train_round(strategy, 1, big, [(n, reply(big)) for n in range(1, 5)])

    # Assert: stddev 0.8 * 2 / 4; the sample stddev's relative error is 1/sqrt(2e5) =
    # 0.22%, so 1% is 4.5 standard errors away, and the seed fixes the draws anyway
    expected = 0.8 * 2.0 / 4
    assert np.std(new["w"]) == pytest.approx(expected, rel=0.01)
    assert abs(float(np.mean(new["w"]))) < 5 * expected / math.sqrt(big["w"].size)
    assert metrics["dp-noise-stddev"] == pytest.approx(expected)


def test_updates_are_clipped_to_c_and_averaged_with_equal_weights() -> None:
    # Arrange: updates of norm 3 (w) and of norm 0.3, weights 1 and 100; no real noise
    start = ArrayRecord({"w": np.zeros(9)})
    long = ArrayRecord({"w": np.full(9, 1.0)})  # norm 3
    short = ArrayRecord({"w": np.full(9, 0.1)})  # norm 0.3
    strategy = CentralDP(
        FedAvg(seed=0, min_train_nodes=2), noise_multiplier=1e-9, clipping_norm=1.0, delta=1e-5
    )

    # Act
    new, _, _ = train_round(strategy, 1, start, [(1, reply(long, 1)), (2, reply(short, 100))])

    # Assert: (1/3 + 0.1) / 2 per element, whatever the weights
    np.testing.assert_allclose(new["w"], np.full(9, (1 / 3 + 0.1) / 2), atol=1e-6)


def test_a_run_with_central_dp_records_epsilon_every_round() -> None:
    # Arrange
    events: list[Event] = []
    strategy = CentralDP(
        FedAvg(seed=1, fraction_train=0.5), noise_multiplier=1.0, clipping_norm=1.0, delta=1e-3
    )

    # Act
    result = simulate(strategy, 3, num_nodes=6, events=events)

    # Assert: the history, the events and the accountant agree, and epsilon grows
    series = result.history.series("server", "privacy-epsilon")
    assert [r for r, _ in series] == [1, 2, 3]
    epsilons = [e for _, e in series]
    assert 0 < epsilons[0] < epsilons[1] < epsilons[2] == pytest.approx(strategy.epsilon())
    privacy = [e for e in events if e.kind == "privacy"]
    assert [e.data["epsilon"] for e in privacy] == epsilons
    assert all(e.data["delta"] == 1e-3 for e in privacy)
    assert result.history.round(3).server["privacy-delta"] == 1e-3
    assert result.history.round(1).train_replies == 3
    # The same seed gives the same run: sampling and noise draw from the strategy's rng
    again = CentralDP(
        FedAvg(seed=1, fraction_train=0.5), noise_multiplier=1.0, clipping_norm=1.0, delta=1e-3
    )
    replay = simulate(again, 3, num_nodes=6)
    for name in result.arrays:
        np.testing.assert_array_equal(replay.arrays[name], result.arrays[name])


def test_central_dp_composes_with_fedadam_which_steps_from_the_noised_mean() -> None:
    # Arrange: equal weights and updates within C, and noise far below the tolerance, so
    # the noised clipped mean is FedAdam's own mean
    rounds = [[(n, reply(shifted(INITIAL, 0.01 * n * r))) for n in range(1, 5)] for r in (1, 2)]
    private = CentralDP(FedAdam(seed=0), noise_multiplier=1e-10, clipping_norm=10.0, delta=1e-5)
    plain = FedAdam(seed=0)

    # Act
    got, want = INITIAL, INITIAL
    for server_round, replies in enumerate(rounds, start=1):
        got, _, _ = train_round(private, server_round, got, replies)
        want, _, _ = train_round(plain, server_round, want, replies)

    # Assert
    for name in INITIAL:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6)
    assert set(private.state_dict()) == set(plain.state_dict()) | {"central-dp"}


def test_poisson_sampling_trains_each_node_with_the_rate_and_divides_by_the_expected_number() -> (
    None
):
    # Arrange
    events: list[Event] = []
    strategy = CentralDP(
        FedAvg(seed=5, fraction_train=0.5),
        noise_multiplier=1.0,
        clipping_norm=1.0,
        delta=1e-4,
        sampling="poisson",
    )

    # Act
    result = simulate(strategy, 3, num_nodes=8, events=events)

    # Assert: sample sizes vary, the noise is over the expected 4 nodes
    trained = [s.train_replies for s in result.history.rounds]
    assert all(0 <= n <= 8 for n in trained)
    noise = result.history.series("train", "dp-noise-stddev")
    assert all(value == pytest.approx(1.0 * 1.0 / 4) for _, value in noise)
    assert strategy.accountant.sampling == "poisson"


# Client-side clipping


def test_client_side_clipping_sends_c_and_folds_the_nodes_clipped_updates() -> None:
    # Arrange: updates of norm 0.5 * (pid + 1) * 3 (9 elements), clipped on the nodes to 1
    seen: list[float] = []
    app = numpy_app(mods=(clipping_mod,))

    def spy(message: Message, context: Context, call_next: Any) -> Message:
        seen.append(float(message.content["config"][CLIPPING_NORM_KEY]))
        return call_next(message, context)

    app = numpy_app(mods=(spy, clipping_mod))
    strategy = CentralDP(
        FedAvg(seed=0), noise_multiplier=1e-9, clipping_norm=1.0, clipping="client", delta=1e-5
    )

    # Act
    result = simulate(strategy, 1, app=app)

    # Assert: every node was sent C; all four clipped to norm 1 along (1, ..., 1) / 3
    assert seen == [1.0] * 4
    assert result.history.round(1).train_failures == 0
    np.testing.assert_allclose(result.arrays["b"], np.full(3, 1 / 3), atol=1e-6)
    assert "dp-unclipped" not in result.history.round(1).train


def test_client_side_clipping_refuses_an_update_longer_than_c() -> None:
    # Arrange: a ClientApp without the clipping mod
    events: list[Event] = []
    strategy = CentralDP(
        FedAvg(seed=0), noise_multiplier=1.0, clipping_norm=1.0, clipping="client", delta=1e-5
    )

    # Act
    result = simulate(strategy, 1, app=numpy_app(step=0.1), events=events)

    # Assert: nodes moved 0.1 to 0.4 on 9 elements (norms 0.3, 0.6, 0.9: kept; 1.2: over)
    errors = [e for e in events if e.kind == "reply.error"]
    assert result.history.round(1).train_replies == 3
    assert len(errors) == 1
    assert all(e.data["code"] == ErrorCode.INVALID_REPLY for e in errors)
    assert "above the clipping norm 1 it was sent" in errors[0].data["reason"]
    assert "clipping_mod" in errors[0].data["reason"]


# Adaptive clipping


def test_adaptive_clipping_moves_c_towards_the_target_quantile_of_update_norms() -> None:
    # Arrange: ten nodes whose updates have norms 1 to 10; C starts at 0.1
    start = ArrayRecord({"w": np.zeros(4)})
    replies = [(n, reply(ArrayRecord({"w": np.full(4, n / 2)}))) for n in range(1, 11)]
    strategy = CentralDP(
        FedAvg(seed=2, min_train_nodes=10),
        noise_multiplier=0.1,
        clipping_norm=0.1,
        adaptive=AdaptiveClipping(target_quantile=0.5, learning_rate=0.5, clipped_count_stddev=0.5),
        delta=1e-5,
    )

    # Act: C grows by at most exp(0.25) a round, so 40 rounds reach the median
    norms = []
    for server_round in range(1, 41):
        _, metrics, _ = train_round(strategy, server_round, start, replies, num_nodes=10)
        norms.append(metrics["dp-clipping-norm"])

    # Assert: it climbed from 0.1 and settled between the 3rd and 8th norms
    assert norms[0] == 0.1 and norms[10] > 1.0
    assert 3.0 <= float(np.median(norms[-10:])) <= 8.0


def test_adaptive_clipping_needs_a_count_noise_above_half_the_multiplier() -> None:
    with pytest.raises(ConfigError, match="clipped_count_stddev > noise_multiplier / 2"):
        CentralDP(
            FedAvg(),
            noise_multiplier=1.0,
            clipping_norm=1.0,
            adaptive=AdaptiveClipping(clipped_count_stddev=0.4),
            delta=1e-5,
        )


# The budget and checkpoints


def test_a_run_stops_before_the_round_that_would_exceed_its_budget() -> None:
    # Arrange: the epsilon after each of 6 rounds, then a budget between rounds 3 and 4
    def make(budget: float | None) -> CentralDP:
        return CentralDP(
            FedAvg(seed=4, fraction_train=0.5),
            noise_multiplier=1.2,
            clipping_norm=1.0,
            delta=1e-3,
            epsilon_budget=budget,
        )

    unlimited = simulate(make(None), 6, num_nodes=6)
    epsilons = [e for _, e in unlimited.history.series("server", "privacy-epsilon")]
    budget = (epsilons[2] + epsilons[3]) / 2
    events: list[Event] = []

    # Act
    result = simulate(make(budget), 6, num_nodes=6, events=events)

    # Assert: three rounds ran, the final arrays are those of round 3, and why it stopped
    # is said with the round and the epsilon spent
    assert [s.round for s in result.history.rounds] == [1, 2, 3]
    three = simulate(make(None), 3, num_nodes=6)
    for name in INITIAL:
        np.testing.assert_array_equal(result.arrays[name], three.arrays[name])
    (stop,) = [e for e in events if e.kind == "run.stop"]
    assert stop.round == 4
    assert stop.data["last_round"] == 3
    assert stop.data["epsilon"] == pytest.approx(epsilons[2])
    assert "privacy budget reached" in stop.data["reason"]
    assert epsilons[2] <= budget < epsilons[3]


def test_a_checkpointed_run_resumes_its_accounting() -> None:
    # Arrange: a run whose ServerApp dies in round 3, and one that never stops
    def make() -> CentralDP:
        return CentralDP(
            FedAdam(fraction_train=0.5, min_available_nodes=1, seed=11),
            noise_multiplier=1.0,
            clipping_norm=5.0,
            adaptive=AdaptiveClipping(clipped_count_stddev=1.0),
            delta=1e-4,
        )

    reference = make().start(CheckpointGrid(), INITIAL_CHECKPOINTED, 4)
    grid = CheckpointGrid(crash_in_round=3)
    with pytest.raises(_Crash):
        make().start(grid, INITIAL_CHECKPOINTED, 4)

    # Act
    grid.crash_in_round = None
    resumed_strategy = make()
    resumed = resumed_strategy.start(grid, INITIAL_CHECKPOINTED, 4)

    # Assert: the same epsilons, C and arrays as if it had never stopped
    assert resumed_strategy.accountant.rounds == 4
    assert resumed.history.series("server", "privacy-epsilon") == reference.history.series(
        "server", "privacy-epsilon"
    )
    assert resumed.history.series("train", "dp-clipping-norm") == reference.history.series(
        "train", "dp-clipping-norm"
    )
    for name in reference.arrays:
        np.testing.assert_array_equal(resumed.arrays[name], reference.arrays[name])


INITIAL_CHECKPOINTED = ArrayRecord(
    {"w": np.arange(6, dtype=np.float64).reshape(2, 3), "b": np.ones(3)}
)


def test_a_checkpoint_without_central_dp_state_is_refused() -> None:
    strategy = CentralDP(FedAvg(), noise_multiplier=1.0, clipping_norm=1.0, delta=1e-5)

    with pytest.raises(ConfigError, match="no ConfigRecord 'central-dp'"):
        strategy.load_state_dict(RecordDict())
    with pytest.raises(ConfigError, match="malformed CentralDP state"):
        strategy.load_state_dict(RecordDict({"central-dp": ConfigRecord({"epsilon": 1.0})}))


# What cannot be wrapped


@pytest.mark.parametrize(
    "strategy",
    [FedMedian(), QFedAvg(client_learning_rate=0.1), Scaffold(), "not a strategy"],
    ids=["fedmedian", "qfedavg", "scaffold", "str"],
)
def test_strategies_that_do_not_average_updates_are_refused(strategy: Any) -> None:
    with pytest.raises(ConfigError, match="CentralDP wraps strategies that average the updates"):
        CentralDP(strategy, noise_multiplier=1.0, clipping_norm=1.0, delta=1e-5)


def test_a_strategy_with_its_own_selection_is_refused() -> None:
    strategy = FedProx(proximal_mu=0.1, selection=AttributeSelection(lambda node_id: {}))

    with pytest.raises(ConfigError, match="selects them with AttributeSelection"):
        CentralDP(strategy, noise_multiplier=1.0, clipping_norm=1.0, delta=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"clipping": "node"}, "clipping must be one of"),
        ({"sampling": "shuffle"}, "sampling must be one of"),
        ({"clipping_norm": 0.0}, "clipping norm must be a positive finite number"),
        ({"epsilon_budget": -1.0}, "epsilon_budget must be > 0"),
        ({"delta": 0.0}, r"delta must be in \(0, 1\)"),
    ],
)
def test_bad_settings_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"noise_multiplier": 1.0, "clipping_norm": 1.0, "delta": 1e-5}

    with pytest.raises(ConfigError, match=message):
        CentralDP(FedAvg(), **(settings | options))
