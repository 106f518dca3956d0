from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Container
from typing import Any

import numpy as np
import pytest

from corolla.client import ClientApp
from corolla.core import (
    ArrayRecord,
    ConfigError,
    Context,
    ErrorCode,
    Event,
    ExecutionError,
    Message,
    MetricRecord,
    RecordDict,
)
from corolla.server import RunResult
from corolla.simulation import InlineExecutor, SimulationGrid
from corolla.strategy import FedAvg

INITIAL = ArrayRecord({"w": np.zeros((2, 3), np.float32), "b": np.arange(3, dtype=np.float64)})


def weight_of(pid: int) -> int:
    return pid + 1


def delta_of(pid: int) -> dict[str, np.ndarray]:
    """What node ``pid`` adds to each array: multiples of 1/4, so all sums are exact."""
    return {
        "w": np.full((2, 3), 0.25 * (pid + 1), np.float32),
        "b": np.array([pid, -pid, 0.5], np.float64),
    }


@dataclasses.dataclass
class Calls:
    """What the ClientApp saw: ``(message type, round, node id, config)`` per call."""

    seen: list[tuple[str, int, int, dict[str, Any]]] = dataclasses.field(default_factory=list)

    def nodes(self, message_type: str, server_round: int) -> list[int]:
        return sorted(n for t, r, n, _ in self.seen if t == message_type and r == server_round)


def make_client_app(
    calls: Calls,
    *,
    raise_on: Container[int] = (),
    raise_in_round: int | None = None,
    bad_shape_on: Container[int] = (),
    weight: Callable[[int], float] = weight_of,
) -> ClientApp:
    """A ClientApp adding ``delta_of(pid)`` to the arrays, with ``weight(pid)`` examples;
    nodes (by partition id) in ``raise_on`` raise, as every node does in round
    ``raise_in_round``; those in ``bad_shape_on`` send a wrongly shaped update."""
    app = ClientApp()

    def note(message: Message, ctx: Context) -> int:
        config = dict(message.content["config"])
        calls.seen.append(
            (message.metadata.message_type, int(config["server-round"]), ctx.node_id, config)
        )
        return int(ctx.node_config["partition-id"])

    @app.train()
    def train(message: Message, ctx: Context) -> Message:
        pid = note(message, ctx)
        if pid in raise_on or message.content["config"]["server-round"] == raise_in_round:
            raise RuntimeError(f"node with partition {pid} fails")
        arrays = message.content["arrays"]
        new = ArrayRecord({k: v + delta_of(pid)[k] for k, v in arrays.items()})
        if pid in bad_shape_on:
            new = new | {"w": np.zeros((3, 2), np.float32)}
        metrics = MetricRecord({"num-examples": weight(pid), "loss": float(pid)})
        return Message(RecordDict({"arrays": new, "metrics": metrics}), reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, ctx: Context) -> RecordDict:
        pid = note(message, ctx)
        metrics = {"num-examples": weight(pid), "accuracy": pid / 10, "loss": 1.0}
        return RecordDict({"metrics": MetricRecord(metrics)})

    return app


def run(
    strategy: FedAvg,
    *,
    num_nodes: int = 4,
    num_rounds: int = 2,
    calls: Calls | None = None,
    events: list[Event] | None = None,
    **app_options: Any,
) -> RunResult:
    app = make_client_app(calls if calls is not None else Calls(), **app_options)
    sink = events.append if events is not None else None
    grid = SimulationGrid(InlineExecutor(app), num_nodes, events=sink)
    return strategy.start(grid, INITIAL, num_rounds, train_config={"lr": 0.5})


def hand_fedavg(num_rounds: int, pids: list[int]) -> dict[str, np.ndarray]:
    """FedAvg of ``delta_of`` updates from nodes ``pids``, computed the plain way."""
    arrays = {k: v.astype(np.float64) for k, v in INITIAL.items()}
    total = sum(weight_of(p) for p in pids)
    for _ in range(num_rounds):
        arrays = {
            k: sum(weight_of(p) * (v + delta_of(p)[k]) for p in pids) / total
            for k, v in arrays.items()
        }
    return {k: arrays[k].astype(INITIAL[k].dtype) for k in arrays}


def assert_arrays(result: ArrayRecord, expected: dict[str, np.ndarray]) -> None:
    assert list(result) == list(INITIAL)
    for name, value in expected.items():
        assert result[name].dtype == INITIAL[name].dtype
        np.testing.assert_array_equal(result[name], value)


# Averaging


def test_the_final_arrays_are_the_weighted_average_of_the_updates() -> None:
    result = run(FedAvg(seed=0), num_rounds=3)

    assert_arrays(result.arrays, hand_fedavg(3, pids=[0, 1, 2, 3]))
    # By hand for "w": each round adds sum((p+1) * (p+1) / 4) / sum(p+1) = 30/4/10 = 0.75.
    assert result.arrays["w"].tolist() == [[2.25] * 3] * 2


def test_every_node_trains_every_round_with_the_config() -> None:
    calls = Calls()

    result = run(FedAvg(seed=0), calls=calls, num_rounds=2)

    for server_round in (1, 2):
        assert calls.nodes("train", server_round) == [1, 2, 3, 4]
        assert calls.nodes("evaluate", server_round) == [1, 2, 3, 4]
    configs = [c for t, _, _, c in calls.seen if t == "train"]
    assert all(c["lr"] == 0.5 for c in configs)
    summary = result.history.round(2)
    assert (summary.train_replies, summary.train_failures) == (4, 0)
    assert (summary.evaluate_replies, summary.evaluate_failures) == (4, 0)


def test_training_metrics_are_weighted_averages() -> None:
    result = run(FedAvg(seed=0), num_rounds=1)

    train = result.history.round(1).train
    # loss = pid, weight = pid + 1: (0*1 + 1*2 + 2*3 + 3*4) / 10
    assert train["loss"] == pytest.approx(2.0)
    assert train["num-examples"] == 10


def test_federated_evaluation_metrics_are_aggregated() -> None:
    result = run(FedAvg(seed=0), num_rounds=2)

    for server_round in (1, 2):
        evaluate = result.history.round(server_round).evaluate
        # accuracy = pid / 10, weight = pid + 1: (0 + 2*0.1 + 3*0.2 + 4*0.3) / 10
        assert evaluate["accuracy"] == pytest.approx(0.2)
        assert evaluate["loss"] == pytest.approx(1.0)
        assert evaluate["num-examples"] == 10
    assert result.history.series("evaluate", "accuracy") == [
        (1, pytest.approx(0.2)),
        (2, pytest.approx(0.2)),
    ]


def test_fraction_evaluate_zero_disables_federated_evaluation() -> None:
    calls = Calls()

    result = run(FedAvg(seed=0, fraction_evaluate=0.0), calls=calls)

    assert not [c for c in calls.seen if c[0] == "evaluate"]
    assert all(s.evaluate == {} and s.evaluate_replies == 0 for s in result.history.rounds)


def test_evaluate_fn_is_called_for_round_zero_to_the_last() -> None:
    seen: list[tuple[int, ArrayRecord]] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        seen.append((server_round, arrays))
        return {"distance": float(np.abs(arrays["w"]).sum())}

    grid = SimulationGrid(InlineExecutor(make_client_app(Calls())), 4)
    result = FedAvg(seed=0).start(grid, INITIAL, 3, evaluate_fn=evaluate_fn)

    assert [r for r, _ in seen] == [0, 1, 2, 3]
    assert seen[0][1] == INITIAL
    for server_round, arrays in seen[1:]:
        assert_arrays(arrays, hand_fedavg(server_round, pids=[0, 1, 2, 3]))
    assert seen[-1][1] == result.arrays
    assert result.history.series("server", "distance") == [
        (0, 0.0),
        (1, 4.5),
        (2, 9.0),
        (3, 13.5),
    ]


def test_evaluate_fn_returning_none_records_nothing() -> None:
    grid = SimulationGrid(InlineExecutor(make_client_app(Calls())), 2)

    result = FedAvg(seed=0).start(grid, INITIAL, 1, evaluate_fn=lambda r, a: None)

    assert all(s.server == {} for s in result.history.rounds)


# Sampling


def test_fraction_train_samples_the_right_number_of_nodes() -> None:
    calls = Calls()

    run(FedAvg(fraction_train=0.3, fraction_evaluate=0.5, seed=1), num_nodes=10, calls=calls)

    for server_round in (1, 2):
        assert len(calls.nodes("train", server_round)) == 3
        assert len(calls.nodes("evaluate", server_round)) == 5


def test_min_train_nodes_raises_the_sample() -> None:
    calls = Calls()

    run(FedAvg(fraction_train=0.1, min_train_nodes=4, seed=1), num_nodes=10, calls=calls)

    assert len(calls.nodes("train", 1)) == 4


def sampled(strategy: FedAvg, num_rounds: int = 4) -> list[list[int]]:
    calls = Calls()
    run(strategy, num_nodes=20, num_rounds=num_rounds, calls=calls)
    return [calls.nodes("train", r) for r in range(1, num_rounds + 1)]


def test_sampling_is_reproducible_with_the_same_seed() -> None:
    first = sampled(FedAvg(fraction_train=0.2, fraction_evaluate=0.0, seed=42))
    again = sampled(FedAvg(fraction_train=0.2, fraction_evaluate=0.0, seed=42))
    from_rng = sampled(
        FedAvg(fraction_train=0.2, fraction_evaluate=0.0, rng=np.random.default_rng(42))
    )
    other = sampled(FedAvg(fraction_train=0.2, fraction_evaluate=0.0, seed=43))

    assert first == again == from_rng
    assert first != other
    assert len({tuple(nodes) for nodes in first}) > 1  # rounds draw different nodes


def test_the_final_arrays_average_only_the_sampled_nodes() -> None:
    calls = Calls()

    result = run(FedAvg(fraction_train=0.5, seed=3), calls=calls, num_rounds=1)

    pids = [n - 1 for n in calls.nodes("train", 1)]
    assert len(pids) == 2
    assert_arrays(result.arrays, hand_fedavg(1, pids))


# Failures


def test_a_raising_client_is_counted_and_the_round_goes_on() -> None:
    events: list[Event] = []

    result = run(FedAvg(seed=0), raise_on={2}, events=events, num_rounds=2)

    assert_arrays(result.arrays, hand_fedavg(2, pids=[0, 1, 3]))
    for server_round in (1, 2):
        summary = result.history.round(server_round)
        assert (summary.train_replies, summary.train_failures) == (3, 1)
        assert (summary.evaluate_replies, summary.evaluate_failures) == (4, 0)
    errors = [e for e in events if e.kind == "reply.error"]
    assert [(e.round, e.node_id, e.data["phase"]) for e in errors] == [
        (1, 3, "train"),
        (2, 3, "train"),
    ]
    assert errors[0].data["code"] == ErrorCode.CLIENT_APP_RAISED
    assert "node with partition 2 fails" in errors[0].data["reason"]


def test_a_round_in_which_every_client_fails_keeps_the_arrays() -> None:
    events: list[Event] = []

    # Round 1 fails everywhere (nodes are told their round), round 2 trains.
    result = run(FedAvg(seed=0), raise_in_round=1, events=events, num_rounds=2)

    first, second = result.history.rounds
    assert (first.train_replies, first.train_failures) == (0, 4) and first.train == {}
    assert second.train_replies == 4
    assert result.arrays is not None and result.arrays != INITIAL


def test_a_run_in_which_every_client_fails_ends_with_the_first_error() -> None:
    events: list[Event] = []

    with pytest.raises(ExecutionError) as failed:
        run(FedAvg(seed=0), raise_on=range(4), events=events, num_rounds=2)

    message = str(failed.value)
    assert "every training reply of the run failed (8 over 2 rounds)" in message
    assert "round 1, node 1: CLIENT_APP_RAISED" in message
    assert "node with partition 0 fails" in message
    assert not [e for e in events if e.kind == "run.result"]  # no result reported


def test_too_few_replies_keep_the_arrays() -> None:
    result = run(FedAvg(seed=0, min_train_replies=2), raise_on={0, 1, 2}, num_rounds=1)

    assert result.arrays == INITIAL
    assert result.history.round(1).train_replies == 1


def test_a_reply_with_wrong_shapes_is_rejected_not_folded() -> None:
    events: list[Event] = []

    result = run(FedAvg(seed=0), bad_shape_on={1}, events=events, num_rounds=1)

    assert_arrays(result.arrays, hand_fedavg(1, pids=[0, 2, 3]))
    summary = result.history.round(1)
    assert (summary.train_replies, summary.train_failures) == (3, 1)
    [error] = [e for e in events if e.kind == "reply.error"]
    assert (error.node_id, error.data["code"]) == (2, ErrorCode.INVALID_REPLY)
    assert "shape" in error.data["reason"]


def test_replies_that_all_weigh_zero_keep_the_arrays() -> None:
    result = run(FedAvg(seed=0), weight=lambda pid: 0, num_rounds=2)

    assert result.arrays == INITIAL
    assert result.history.round(1).train_replies == 4
    assert result.history.round(1).train["num-examples"] == 0


# Configuration


@pytest.mark.parametrize(
    "options",
    [
        {"fraction_train": 0.0},
        {"fraction_train": -0.5},
        {"fraction_train": 1.5},
        {"fraction_train": math.nan},
        {"fraction_evaluate": -0.1},
        {"fraction_evaluate": 1.01},
        {"fraction_evaluate": math.nan},
        {"min_train_nodes": -1},
        {"min_evaluate_nodes": -1},
        {"min_available_nodes": -1},
        {"min_train_replies": -1},
    ],
    ids=str,
)
def test_bad_settings_are_config_errors(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        FedAvg(**options)  # type: ignore[arg-type]


def test_custom_record_names_reach_the_clients_and_back() -> None:
    app = ClientApp()

    @app.train()
    def train(message: Message, ctx: Context) -> RecordDict:
        params = message.content["params"]
        assert message.content["settings"]["server-round"] >= 1
        stats = MetricRecord({"n": 1})
        return RecordDict({"params": params | {"b": params["b"] + 2.0}, "stats": stats})

    strategy = FedAvg(
        fraction_evaluate=0.0,
        arrays_key="params",
        metrics_key="stats",
        config_key="settings",
        weight_key="n",
    )
    grid = SimulationGrid(InlineExecutor(app), 3)

    result = strategy.start(grid, INITIAL, 2)

    assert result.arrays["b"].tolist() == [4.0, 5.0, 6.0]
    assert result.history.round(2).train_failures == 0


# Events


def test_round_and_run_events_are_emitted() -> None:
    events: list[Event] = []

    result = run(FedAvg(seed=0), events=events, num_rounds=2)

    kinds = [e.kind for e in events if e.kind != "progress"]
    assert kinds == ["round.start", "round.end", "round.start", "round.end", "run.result"]
    ends = [e for e in events if e.kind == "round.end"]
    assert [e.round for e in ends] == [1, 2]
    assert ends[1].data == result.history.round(2).to_dict()
    assert ends[1].data["train_replies"] == 4
    [final] = [e for e in events if e.kind == "run.result"]
    assert result.arrays is not None and result.history is not None
    assert final.data == {"arrays": list(result.arrays), "rounds": 2}
    assert all(e.run_id == 1 for e in events)


def test_round_zero_ends_with_an_event_when_evaluated_on_the_server() -> None:
    events: list[Event] = []
    grid = SimulationGrid(InlineExecutor(make_client_app(Calls())), 2, events=events.append)

    FedAvg(seed=0).start(grid, INITIAL, 1, evaluate_fn=lambda r, a: {"x": float(r)})

    ends = [e for e in events if e.kind == "round.end"]
    assert [e.round for e in ends] == [0, 1]
    assert ends[0].data["server"] == {"x": 0.0}
