"""GrpcGrid.wait_for_nodes tells whoever follows the run that it waits, and for how many."""

from __future__ import annotations

import threading

import grpc
import pytest

from corolla.core import NotEnoughNodesError
from corolla.runtime import GrpcGrid, Link
from corolla.transport import fleet_pb2, fleet_pb2_grpc

HASH = "0" * 64


def _grid(link: Link, channel: grpc.Channel) -> GrpcGrid:
    run = link.state.create_run(HASH, {})
    return GrpcGrid(channel, run.run_id, link.issue_run_secret(run.run_id))


def _events(link: Link, run_id: int) -> list[tuple[str, dict]]:
    return [(e.event.kind, dict(e.event.data)) for e in link.state.read_events(run_id, after=0)]


def test_a_run_without_nodes_says_it_waits_and_how_many_are_missing(
    link: Link, appio_channel: grpc.Channel
) -> None:
    grid = _grid(link, appio_channel)

    with pytest.raises(NotEnoughNodesError, match="at least 2 needed"):
        grid.wait_for_nodes(2, timeout=0.3)

    waiting = [data for kind, data in _events(link, grid.run_id) if kind == "nodes.waiting"]
    assert waiting[0] == {"connected": 0, "needed": 2}
    assert len(waiting) == 1  # repeated rarely, not at every look


def test_enough_nodes_end_the_wait_with_nodes_ready(
    link: Link, appio_channel: grpc.Channel, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    grid = _grid(link, appio_channel)
    found: list[list[int]] = []
    waiter = threading.Thread(target=lambda: found.append(grid.wait_for_nodes(1, timeout=60)))
    waiter.start()
    try:
        for _ in range(600):  # until the grid has said it waits (at most 60 s)
            if any(kind == "nodes.waiting" for kind, _ in _events(link, grid.run_id)):
                break
            waiter.join(0.1)
        node_id = fleet.RegisterNode(fleet_pb2.RegisterNodeRequest()).node_id
    finally:
        waiter.join(60)

    assert found == [[node_id]]
    kinds = [(kind, data) for kind, data in _events(link, grid.run_id)]
    assert kinds[0] == ("nodes.waiting", {"connected": 0, "needed": 1})
    assert kinds[-1][0] == "nodes.ready" and kinds[-1][1]["nodes"] == 1


def test_no_event_when_the_nodes_are_there(
    link: Link, appio_channel: grpc.Channel, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    fleet.RegisterNode(fleet_pb2.RegisterNodeRequest())
    grid = _grid(link, appio_channel)

    assert len(grid.wait_for_nodes(1, timeout=10)) == 1
    assert _events(link, grid.run_id) == []
