from __future__ import annotations

import pytest

import corolla.server
from corolla.core import (
    Error,
    ErrorCode,
    Event,
    Message,
    MetricRecord,
    NotEnoughNodesError,
    RecordDict,
)
from corolla.server import Aggregator, Grid, Reduction, fold_reply

from .doubles import MemoryGrid, Sum, echo


def value(x: int) -> RecordDict:
    return RecordDict({"m": MetricRecord({"x": x})})


def messages(nodes: list[int], x: int = 1) -> list[Message]:
    return [Message(value(x), dst_node_id=n, message_type="train", group_id="1") for n in nodes]


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert sorted(corolla.server.__all__) == [
        "Aggregator",
        "CheckpointStore",
        "Grid",
        "History",
        "MainFunction",
        "MemoryCheckpoints",
        "Reduction",
        "RoundSummary",
        "RunResult",
        "ServerApp",
        "fold",
        "fold_reply",
        "node_order",
        "rejected_reply",
    ]
    assert all(hasattr(corolla.server, name) for name in corolla.server.__all__)


def test_a_grid_knows_nothing_of_its_nodes_by_default() -> None:
    grid = MemoryGrid(nodes=[1, 2])

    assert [grid.node_attributes(n) for n in (1, 2, 99)] == [{}, {}, {}]
    assert [grid.node_last_seen(n) for n in (1, 2, 99)] == [None, None, None]


def test_the_test_aggregator_satisfies_the_protocol() -> None:
    aggregator: Aggregator = Sum()

    assert aggregator.count == 0


def test_grid_is_abstract() -> None:
    with pytest.raises(TypeError):
        Grid()  # type: ignore[abstract]


def test_the_default_emit_discards_events() -> None:
    grid = MemoryGrid()

    assert Grid.emit(grid, Event("round.start")) is None
    assert grid.events == []


# wait_for_nodes


def test_wait_for_nodes_returns_the_available_ids() -> None:
    grid = MemoryGrid(nodes=[3, 1, 2])

    assert grid.wait_for_nodes(2, timeout=0) == [1, 2, 3]
    assert grid.wait_for_nodes(0) == [1, 2, 3]


def test_wait_for_nodes_raises_when_too_few_arrive_in_time() -> None:
    grid = MemoryGrid(nodes=[1])

    with pytest.raises(NotEnoughNodesError, match=r"1 nodes available.*at least 2 needed"):
        grid.wait_for_nodes(2, timeout=0)


def test_wait_for_nodes_waits_for_nodes_to_join() -> None:
    grid = MemoryGrid(nodes=[1], joining=[5, 4])

    # The first poll sees 1 and 5, the second 1, 4 and 5.
    assert grid.wait_for_nodes(3, timeout=10) == [1, 4, 5]


# send_and_receive


def test_send_and_receive_collects_the_replies() -> None:
    grid = MemoryGrid()

    replies = grid.send_and_receive(messages([1, 3], x=2), timeout=2.5)

    assert [r.metadata.src_node_id for r in replies] == [1, 3]
    assert [r.metadata.reply_to_message_id for r in replies] == ["msg-1", "msg-2"]
    assert all(r.content == value(2) for r in replies)
    assert grid.timeouts == [2.5]


# send_and_reduce


def test_send_and_reduce_folds_every_successful_reply() -> None:
    grid = MemoryGrid(nodes=[1, 2, 3])

    reduction = grid.send_and_reduce(messages([1, 2, 3], x=5), Sum(), timeout=7.0)

    assert reduction.aggregator.total == 15
    assert reduction.aggregator.nodes == [1, 2, 3]
    assert (reduction.num_replies, reduction.num_failures) == (3, 0)
    assert reduction.errors == [] and reduction.missing == []
    assert grid.timeouts == [7.0]


def test_send_and_reduce_returns_the_aggregator_it_was_given() -> None:
    aggregator = Sum()

    reduction = MemoryGrid().send_and_reduce(messages([1]), aggregator)

    assert reduction.aggregator is aggregator


def test_error_replies_go_to_errors() -> None:
    def respond(message: Message) -> list[Message]:
        if message.metadata.dst_node_id == 2:
            error = Error(int(ErrorCode.CLIENT_APP_RAISED), "boom")
            return [Message(error=error, reply_to=message)]
        return echo(message)

    reduction = MemoryGrid(respond=respond).send_and_reduce(messages([1, 2, 3]), Sum())

    assert reduction.aggregator.nodes == [1, 3]
    assert [e.metadata.src_node_id for e in reduction.errors] == [2]
    assert reduction.errors[0].error.reason == "boom"
    assert (reduction.num_replies, reduction.num_failures) == (2, 1)


def test_rejected_replies_go_to_errors_as_invalid_replies() -> None:
    def respond(message: Message) -> list[Message]:
        x = -1 if message.metadata.dst_node_id == 3 else 1
        return [Message(value(x), reply_to=message)]

    reduction = MemoryGrid(respond=respond).send_and_reduce(messages([1, 2, 3]), Sum())

    assert reduction.aggregator.nodes == [1, 2]
    [rejected] = reduction.errors
    assert rejected.error.code == ErrorCode.INVALID_REPLY
    assert "node 3" in rejected.error.reason and "x must be >= 0" in rejected.error.reason
    assert rejected.metadata.src_node_id == 3
    assert rejected.metadata.reply_to_message_id == "msg-3"


def test_lost_replies_are_missing_by_node_id() -> None:
    def respond(message: Message) -> list[Message]:
        return [] if message.metadata.dst_node_id in (2, 5) else echo(message)

    grid = MemoryGrid(nodes=[1, 2, 3, 4, 5], respond=respond)

    reduction = grid.send_and_reduce(messages([5, 4, 2, 1]), Sum())

    assert reduction.missing == [2, 5]
    assert reduction.aggregator.nodes == [4, 1]
    assert (reduction.num_replies, reduction.num_failures) == (2, 2)


def test_a_duplicate_reply_is_folded_once() -> None:
    grid = MemoryGrid(respond=lambda message: echo(message) * 2)

    reduction = grid.send_and_reduce(messages([1, 2]), Sum())

    assert reduction.aggregator.nodes == [1, 2]
    assert reduction.num_failures == 0


def test_a_reply_to_a_message_not_sent_here_is_ignored() -> None:
    stray = Message(value(100), dst_node_id=1, message_type="train").with_metadata(
        message_id="elsewhere"
    )

    grid = MemoryGrid(respond=lambda message: [*echo(stray), *echo(message)])

    reduction = grid.send_and_reduce(messages([1]), Sum())

    assert reduction.aggregator.total == 1
    assert reduction.missing == []


def test_send_and_reduce_of_no_messages_is_empty() -> None:
    reduction = MemoryGrid().send_and_reduce([], Sum())

    assert (reduction.num_replies, reduction.num_failures) == (0, 0)


def test_messages_are_stamped_with_the_run_id() -> None:
    grid = MemoryGrid(run_id=9)

    grid.send_and_reduce(messages([1, 2]), Sum())

    assert [m.metadata.run_id for m in grid.sent] == [9, 9]


# fold_reply and Reduction


def reply_from(node_id: int, content: RecordDict | None = None, error: Error | None = None):  # type: ignore[no-untyped-def]
    request = Message(value(0), dst_node_id=node_id, message_type="train").with_metadata(
        message_id=f"r{node_id}"
    )
    return Message(content, error=error, reply_to=request)


def test_fold_reply_adds_content_to_the_aggregator() -> None:
    reduction = Reduction(Sum())

    fold_reply(reduction, reply_from(4, value(3)))

    assert (reduction.aggregator.total, reduction.aggregator.nodes) == (3, [4])
    assert reduction.errors == []


def test_fold_reply_sets_error_replies_aside_untouched() -> None:
    reduction = Reduction(Sum())
    reply = reply_from(4, error=Error(int(ErrorCode.TIMEOUT), "late"))

    fold_reply(reduction, reply)

    assert reduction.errors == [reply]
    assert reduction.aggregator.count == 0


def test_fold_reply_turns_a_rejected_reply_into_an_error() -> None:
    reduction = Reduction(Sum())
    reply = reply_from(4, RecordDict())

    fold_reply(reduction, reply)

    [error] = reduction.errors
    assert error.error.code == ErrorCode.INVALID_REPLY
    assert "no metric 'x'" in error.error.reason
    assert error.metadata == reply.metadata
    assert reduction.aggregator.count == 0


def test_reduction_counts_replies_and_failures() -> None:
    reduction = Reduction(Sum(), missing=[7, 8])
    fold_reply(reduction, reply_from(1, value(1)))
    fold_reply(reduction, reply_from(2, error=Error(1, "x")))

    assert reduction.num_replies == 1
    assert reduction.num_failures == 3
