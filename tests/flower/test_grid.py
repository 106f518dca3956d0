"""FlowerGrid: Flower's Grid over a Corolla simulation grid, driven as Flower's strategies
and legacy server drive theirs."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np
import pytest
from flwr import app as flwr_app
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.supercore.task_identity import TaskIdentity

from corolla.client import ClientApp
from corolla.core import ArrayRecord, Message, MessageError, MetricRecord, RecordDict
from corolla.flower import FlowerGrid
from corolla.simulation import InlineExecutor, SimulationGrid

NUM_NODES = 4

corolla_client = ClientApp()


@corolla_client.train()
def _train(message: Message, context: object) -> Message:
    arrays = message.content["arrays"]
    node = message.metadata.dst_node_id
    updated = ArrayRecord({name: array + node for name, array in arrays.items()})
    return Message(
        RecordDict({"arrays": updated, "metrics": MetricRecord({"node": node})}),
        reply_to=message,
    )


class CountingGrid(SimulationGrid):
    """A simulation grid that keeps what it was asked to send and receive."""

    def __init__(self) -> None:
        super().__init__(InlineExecutor(corolla_client), NUM_NODES, run_id=3)
        self.sent: list[list[Message]] = []
        self.receives = 0

    def send(self, messages: Iterable[Message]) -> list[str]:
        batch = list(messages)
        self.sent.append(batch)
        return super().send(batch)

    def receive(
        self, message_ids: Iterable[str], timeout: float | None = None
    ) -> Iterator[Message]:
        self.receives += 1
        return super().receive(message_ids, timeout)


@pytest.fixture
def grid() -> CountingGrid:
    # Flower stamps the messages a ServerApp creates with its process's task identity,
    # which the ServerApp adapter sets for the run.
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 3
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    return CountingGrid()


def _model() -> flwr_app.RecordDict:
    return flwr_app.RecordDict({"arrays": flwr_app.ArrayRecord([np.zeros(3, dtype=np.float32)])})


def _messages(grid: FlowerGrid, content: flwr_app.RecordDict) -> list[flwr_app.Message]:
    return [
        grid.create_message(content, "train", node_id, group_id="1")
        for node_id in grid.get_node_ids()
    ]


def test_every_node_answers_a_send_and_receive(grid: CountingGrid) -> None:
    # Arrange
    flower = FlowerGrid(grid, {})

    # Act
    replies = flower.send_and_receive(_messages(flower, _model()))

    # Assert: each node's reply, in Flower's types, to the message it was sent
    assert sorted(int(r.content["metrics"]["node"]) for r in replies) == [1, 2, 3, 4]
    for reply in replies:
        node = int(reply.metadata.src_node_id)
        np.testing.assert_array_equal(reply.content["arrays"]["0"].numpy(), np.full(3, node))
    assert flower.batches == [("1", "train", frozenset({1, 2, 3, 4}), frozenset())]


def test_one_model_sent_to_every_node_is_converted_once(grid: CountingGrid) -> None:
    # Arrange: Flower's strategies put one RecordDict in every node's message
    flower = FlowerGrid(grid, {})

    # Act
    flower.push_messages(_messages(flower, _model()))

    # Assert: Corolla's grid got one content for all, which it ships once
    (batch,) = grid.sent
    assert len({id(message.content) for message in batch}) == 1


def test_push_stamps_each_message_with_its_id_and_pull_waits_for_every_reply(
    grid: CountingGrid,
) -> None:
    # Arrange
    flower = FlowerGrid(grid, {})
    messages = _messages(flower, _model())

    # Act
    ids = flower.push_messages(messages)
    replies = flower.pull_messages(ids)

    # Assert: one pull gets all the replies, each naming the message it answers
    assert [m.metadata.message_id for m in messages] == ids
    assert sorted(r.metadata.reply_to_message_id for r in replies) == sorted(ids)


def test_one_message_calls_from_threads_go_out_as_one_batch(grid: CountingGrid) -> None:
    # Arrange: Flower's legacy Server asks each client from a thread of its own
    flower = FlowerGrid(grid, {})
    messages = _messages(flower, _model())
    replies: dict[int, list[flwr_app.Message]] = {}
    start = threading.Barrier(len(messages))

    def ask(message: flwr_app.Message) -> None:
        start.wait()
        replies[int(message.metadata.dst_node_id)] = flower.send_and_receive([message])

    threads = [threading.Thread(target=ask, args=(m,)) for m in messages]

    # Act
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Assert: each call got the reply to its own message, all from one round trip
    assert sorted(replies) == [1, 2, 3, 4]
    for node, (reply,) in replies.items():
        assert int(reply.metadata.src_node_id) == node
    assert grid.receives == 1


def test_a_reply_cannot_be_pushed(grid: CountingGrid) -> None:
    # Arrange
    flower = FlowerGrid(grid, {})
    (reply,) = flower.send_and_receive(_messages(flower, _model())[:1])
    answer = flwr_app.Message(_model(), reply_to=reply)

    # Act / Assert
    with pytest.raises(MessageError, match="sends new messages, not replies"):
        flower.push_messages([answer])
