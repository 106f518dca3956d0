"""Driving a strategy's train hooks with given replies, without running any ClientApp."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from corolla.core import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from corolla.server import Grid, Reduction
from corolla.strategy import Strategy

#: One reply: ``(node id, content)``.
Reply = tuple[int, RecordDict]


class StaticGrid(Grid):
    """A grid whose nodes are always available and never answer (replies are given)."""

    def __init__(self, node_ids: Sequence[int]) -> None:
        self._ids = sorted(node_ids)

    @property
    def run_id(self) -> int:
        return 1

    def node_ids(self) -> list[int]:
        return list(self._ids)

    def send(self, messages: Iterable[Message]) -> list[str]:
        raise AssertionError("StaticGrid sends nothing")

    def receive(
        self, message_ids: Iterable[str], timeout: float | None = None
    ) -> Iterator[Message]:
        raise AssertionError("StaticGrid receives nothing")


def train_round(
    strategy: Strategy,
    server_round: int,
    arrays: ArrayRecord,
    replies: Sequence[Reply],
    *,
    num_nodes: int | None = None,
    config: ConfigRecord | None = None,
) -> tuple[ArrayRecord, MetricRecord, list[Message]]:
    """One training phase: configure, fold ``replies`` into the plan's aggregator, aggregate.

    Returns the new arrays, the metrics and the messages the strategy would have sent.
    """
    ids = [n for n, _ in replies] or [1]
    grid = StaticGrid(range(1, max(num_nodes or 0, max(ids), 2) + 1))
    plan = strategy.configure_train(server_round, arrays, config or ConfigRecord(), grid)
    for node_id, content in replies:
        plan.aggregator.add(content, node_id)
    new, metrics = strategy.aggregate_train(server_round, Reduction(plan.aggregator), arrays)
    return new, metrics, plan.messages


def run_rounds(
    strategy: Strategy,
    initial: ArrayRecord,
    rounds: Sequence[Sequence[Reply]],
    *,
    num_nodes: int | None = None,
) -> list[ArrayRecord]:
    """The global arrays after each round of ``rounds``."""
    arrays = initial
    out = []
    for server_round, replies in enumerate(rounds, start=1):
        arrays, _, _ = train_round(strategy, server_round, arrays, replies, num_nodes=num_nodes)
        out.append(arrays)
    return out
