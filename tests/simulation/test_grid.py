"""SimulationGrid as a node directory: attributes and last-seen times for selection policies."""

from __future__ import annotations

import time

import numpy as np

from corolla.core import ConfigRecord, Message, MessageType, RecordDict
from corolla.simulation import InlineExecutor, SimulationGrid
from corolla.strategy import AttributeSelection, FedAvg, RecentlySeenSelection

from . import apps


def _tagged(partition_id: int, num_nodes: int) -> dict[str, str | int]:
    return {"tags": "gpu,eu" if partition_id % 3 == 0 else "eu", "num-examples": partition_id}


def _grid(num_nodes: int = 7, **options: object) -> SimulationGrid:
    executor = InlineExecutor(apps.faulty)
    executor.start()
    return SimulationGrid(executor, num_nodes, **options)  # type: ignore[arg-type]


def _train(grid: SimulationGrid, nodes: list[int]) -> list[Message]:
    content = RecordDict({"arrays": apps.initial_arrays(), "config": ConfigRecord()})
    messages = [Message(content, dst_node_id=n, message_type=MessageType.TRAIN) for n in nodes]
    return list(grid.receive(grid.send(messages), timeout=30))


def test_attributes_come_from_the_given_function_by_partition() -> None:
    grid = _grid(node_attributes=_tagged)

    assert grid.node_attributes(1) == {"tags": "gpu,eu", "num-examples": 0}
    assert grid.node_attributes(2) == {"tags": "eu", "num-examples": 1}
    assert grid.node_attributes(0) == {} and grid.node_attributes(8) == {}


def test_without_attributes_every_node_has_none() -> None:
    assert _grid().node_attributes(3) == {}


def test_nodes_are_seen_from_the_start_and_again_when_they_answer() -> None:
    before = time.time()
    grid = _grid()
    after = time.time()

    assert all(before <= (grid.node_last_seen(n) or 0) <= after for n in grid.node_ids())
    assert grid.node_last_seen(0) is None and grid.node_last_seen(8) is None

    time.sleep(0.01)
    _train(grid, [2, 5])

    assert (grid.node_last_seen(2) or 0) > after and (grid.node_last_seen(5) or 0) > after
    assert (grid.node_last_seen(3) or 0) <= after


def test_an_error_reply_counts_as_an_answer() -> None:
    executor = InlineExecutor(apps.faulty, run_config={"raise-on": 4})
    executor.start()
    grid = SimulationGrid(executor, 5)
    made = grid.node_last_seen(4) or 0
    time.sleep(0.01)

    [reply] = _train(grid, [4])

    assert reply.has_error()
    assert (grid.node_last_seen(4) or 0) > made


def test_attribute_selection_over_the_grid_trains_only_the_tagged_nodes() -> None:
    grid = _grid(num_nodes=9, node_attributes=_tagged)
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=1,
        min_available_nodes=1,
        selection=AttributeSelection(grid.node_attributes, tags={"gpu"}),
        seed=0,
    )
    plan = strategy.configure_train(1, apps.initial_arrays(), ConfigRecord(), grid)
    trained = sorted(m.metadata.dst_node_id for m in plan.messages)

    assert trained == [1, 4, 7]  # partitions 0, 3, 6


def test_recently_seen_selection_follows_the_answers() -> None:
    grid = _grid(num_nodes=6)
    made = max(grid.node_last_seen(n) or 0 for n in grid.node_ids())
    time.sleep(0.05)
    _train(grid, [1, 6])
    policy = RecentlySeenSelection(grid.node_last_seen, max_age=0.04, clock=lambda: made + 0.06)

    chosen = policy.select(grid.node_ids(), 6, np.random.default_rng(0))

    assert chosen == [1, 6]


def test_a_timed_out_call_is_not_an_answer() -> None:
    from corolla.simulation import ProcessExecutor

    executor = ProcessExecutor(apps.faulty, run_config={"sleep-on": 2}, num_workers=1)
    executor.start()
    try:
        grid = SimulationGrid(executor, 3)
        made = grid.node_last_seen(2)
        time.sleep(0.01)
        content = RecordDict({"arrays": apps.initial_arrays(), "config": ConfigRecord()})
        message = Message(content, dst_node_id=2, message_type=MessageType.TRAIN)

        [reply] = list(grid.receive(grid.send([message]), timeout=1.0))

        assert reply.has_error()
        assert grid.node_last_seen(2) == made
    finally:
        executor.close()


def test_run_simulation_hands_attributes_to_the_grid() -> None:
    from corolla.simulation import run_simulation

    result = run_simulation(
        apps.tagged_server, apps.faulty, 6, backend="inline", node_attributes=_tagged
    )

    assert result.history is not None
    assert result.history.series("train", "num-examples") == [(1, 2)]  # nodes 1 and 4


def test_each_virtual_node_gets_its_partition_as_flower_names_it() -> None:
    executor = InlineExecutor(apps.partition_echo)
    executor.start()
    grid = SimulationGrid(executor, 4)
    messages = [
        Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY)
        for n in grid.node_ids()
    ]

    replies = list(grid.receive(grid.send(messages), timeout=30))

    partitions = {
        r.metadata.src_node_id: dict(r.content["partition"]) for r in replies if r.has_content()
    }
    assert partitions == {n: {"partition-id": n - 1, "num-partitions": 4} for n in range(1, 5)}
