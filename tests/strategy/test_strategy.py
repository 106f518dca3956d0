from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import corolla.strategy
from corolla.core import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    Event,
    Message,
    MetricRecord,
    RecordDict,
)
from corolla.server import Grid, Reduction
from corolla.strategy import RoundPlan, Strategy, WrappedStrategy
from tests.server.doubles import MemoryGrid, Sum

INITIAL = ArrayRecord({"w": np.zeros(2, np.float32)})


class Counting(Strategy):
    """Sends each node its round number; the arrays grow by the sum of the replies."""

    def __init__(self, evaluate: bool = True) -> None:
        self.evaluate = evaluate
        self.hooks: list[tuple[str, int, dict[str, Any]]] = []

    def _plan(self, server_round: int, config: ConfigRecord, grid: Grid, kind: str) -> RoundPlan:
        content = RecordDict({"m": MetricRecord({"x": server_round}), "config": config})
        messages = [
            Message(content, dst_node_id=n, message_type=kind, group_id=str(server_round))
            for n in grid.node_ids()
        ]
        return RoundPlan(messages, Sum())

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        self.hooks.append(("configure_train", server_round, dict(config)))
        return self._plan(server_round, config, grid, "train")

    def aggregate_train(
        self, server_round: int, reduction: Reduction[Any], arrays: ArrayRecord
    ) -> tuple[ArrayRecord, MetricRecord]:
        self.hooks.append(("aggregate_train", server_round, {}))
        total = reduction.aggregator.total
        return ArrayRecord({"w": arrays["w"] + np.float32(total)}), MetricRecord({"sum": total})

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> RoundPlan:
        self.hooks.append(("configure_evaluate", server_round, dict(config)))
        if not self.evaluate:
            return RoundPlan([], Sum())
        return self._plan(server_round, config, grid, "evaluate")

    def aggregate_evaluate(self, server_round: int, reduction: Reduction[Any]) -> MetricRecord:
        self.hooks.append(("aggregate_evaluate", server_round, {}))
        return MetricRecord({"evaluated": reduction.aggregator.count})


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert sorted(corolla.strategy.__all__) == [
        "AllUpdates",
        "ArraySpec",
        "AttributeLookup",
        "AttributeSelection",
        "Bulyan",
        "CONTROL_DELTA_KEY",
        "CONTROL_KEY",
        "EvaluateFn",
        "FedAdagrad",
        "FedAdam",
        "FedAvg",
        "FedAvgM",
        "FedMedian",
        "FedProx",
        "FedTrimmedAvg",
        "FedYogi",
        "Krum",
        "MultiKrum",
        "NodeDirectory",
        "PROXIMAL_MU_KEY",
        "QFedAvg",
        "QFedAvgAggregator",
        "RecentlySeenSelection",
        "RoundPlan",
        "Scaffold",
        "ScaffoldAggregator",
        "SelectionPolicy",
        "StopRun",
        "Strategy",
        "UniformSelection",
        "WeightedAverage",
        "WeightedMetrics",
        "WeightedSelection",
        "WrappedStrategy",
        "array_spec",
        "attribute_weight",
        "check_layout",
        "corrected_gradient",
        "load_control",
        "proximal_gradient",
        "proximal_term",
        "reply_arrays",
        "sample_size",
        "store_control",
        "torch_proximal_term",
        "update_control",
    ]
    assert all(hasattr(corolla.strategy, name) for name in corolla.strategy.__all__)


def test_strategy_is_abstract() -> None:
    with pytest.raises(TypeError):
        Strategy()  # type: ignore[abstract]


def test_the_loop_calls_the_four_hooks_in_order_each_round() -> None:
    strategy = Counting()

    result = strategy.start(MemoryGrid(nodes=[1, 2, 3]), INITIAL, 2)

    assert [(name, r) for name, r, _ in strategy.hooks] == [
        (name, r)
        for r in (1, 2)
        for name in (
            "configure_train",
            "aggregate_train",
            "configure_evaluate",
            "aggregate_evaluate",
        )
    ]
    # Round 1 adds 3 * 1, round 2 adds 3 * 2.
    assert result.arrays["w"].tolist() == [9.0, 9.0]
    assert result.history.series("train", "sum") == [(1, 3), (2, 6)]
    assert result.history.series("evaluate", "evaluated") == [(1, 3), (2, 3)]


class Measuring(Counting):
    """Counting, measuring a server metric of its own each round."""

    def server_metrics(self, server_round: int, grid: Grid) -> MetricRecord:
        return MetricRecord({"measured": server_round})


def test_a_wrapped_strategy_runs_every_hook_of_the_one_it_wraps() -> None:
    inner = Measuring()

    result = WrappedStrategy(inner).start(MemoryGrid(nodes=[1, 2, 3]), INITIAL, 2)

    assert len(inner.hooks) == 8
    assert result.arrays["w"].tolist() == [9.0, 9.0]
    assert result.history.series("server", "measured") == [(1, 1), (2, 2)]


def test_configs_carry_the_round_and_are_not_mutated() -> None:
    strategy = Counting()
    train_config = {"lr": 0.1}
    evaluate_config = ConfigRecord({"batches": 2})

    strategy.start(
        MemoryGrid(), INITIAL, 2, train_config=train_config, evaluate_config=evaluate_config
    )

    configs = {(name, r): c for name, r, c in strategy.hooks if name.startswith("configure")}
    assert configs[("configure_train", 2)] == {"lr": 0.1, "server-round": 2}
    assert configs[("configure_evaluate", 1)] == {"batches": 2, "server-round": 1}
    assert train_config == {"lr": 0.1}
    assert evaluate_config == ConfigRecord({"batches": 2})


def test_the_timeout_reaches_the_grid() -> None:
    grid = MemoryGrid()

    Counting().start(grid, INITIAL, 1, timeout=12.5)

    assert grid.timeouts == [12.5, 12.5]


def test_an_empty_plan_skips_the_phase() -> None:
    strategy = Counting(evaluate=False)
    grid = MemoryGrid()

    result = strategy.start(grid, INITIAL, 1)

    assert "aggregate_evaluate" not in [name for name, _, _ in strategy.hooks]
    assert [m.metadata.message_type for m in grid.sent] == ["train"] * 3
    assert result.history.round(1).evaluate_replies == 0


def test_zero_rounds_return_the_initial_arrays() -> None:
    grid = MemoryGrid()

    result = Counting().start(grid, INITIAL, 0, evaluate_fn=lambda r, a: {"r": r})

    assert result.arrays is INITIAL
    assert result.history.series("server", "r") == [(0, 0)]
    assert [e.kind for e in grid.events] == ["round.end", "run.result"]


def test_missing_and_failed_replies_are_reported_as_events() -> None:
    def respond(message: Message) -> list[Message]:
        node = message.metadata.dst_node_id
        if node == 2:
            return []  # lost
        x = -1 if node == 3 else 1  # the aggregator rejects node 3's reply
        return [Message(RecordDict({"m": MetricRecord({"x": x})}), reply_to=message)]

    grid = MemoryGrid(nodes=[1, 2, 3], respond=respond)

    result = Counting(evaluate=False).start(grid, INITIAL, 1)

    summary = result.history.round(1)
    assert (summary.train_replies, summary.train_failures) == (1, 2)
    reported = [
        (e.kind, e.round, e.node_id, e.data["phase"])
        for e in grid.events
        if e.kind.startswith("reply.")
    ]
    assert reported == [("reply.error", 1, 3, "train"), ("reply.missing", 1, 2, "train")]


def test_round_events_carry_the_summary() -> None:
    grid = MemoryGrid()

    result = Counting().start(grid, INITIAL, 2)

    kinds = [e.kind for e in grid.events]
    assert kinds == ["round.start", "round.end", "round.start", "round.end", "run.result"]
    starts = [e for e in grid.events if e.kind == "round.start"]
    assert [e.data["num_rounds"] for e in starts] == [2, 2]
    ends: list[Event] = [e for e in grid.events if e.kind == "round.end"]
    assert ends[0].data == result.history.round(1).to_dict()
    assert ends[0].data["seconds"] >= 0
    assert all(e.run_id == grid.run_id for e in grid.events)


def test_strategies_without_state_have_an_empty_state_dict() -> None:
    for strategy in (
        corolla.strategy.FedAvg(),
        corolla.strategy.FedMedian(),
        corolla.strategy.FedProx(proximal_mu=0.1),
    ):
        assert strategy.state_dict() == RecordDict()
        strategy.load_state_dict(RecordDict())
        with pytest.raises(ConfigError, match="keeps no state"):
            strategy.load_state_dict(RecordDict({"m": ArrayRecord({"w": [1.0]})}))
