"""A running link on ephemeral loopback ports, and stubs to call it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from corolla.runtime import Link, LinkLimits
from corolla.transport import channel_options, fleet_pb2_grpc


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    with Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        limits=LinkLimits(sweep_interval=0.05),
    ) as running:
        yield running


def holding_streams(stub: fleet_pb2_grpc.FleetStub, held: list[Any]) -> fleet_pb2_grpc.FleetStub:
    """``stub``, the Receive streams it opens kept in ``held``.

    A node whose Receive stream ends is marked offline, and its messages answered with
    errors: a test that answers a message as a node keeps the stream that delivered it
    open, and cancels it once done. (gRPC cancels a call it no longer references.)
    """
    receive = stub.Receive

    def kept(*args: Any, **kwargs: Any) -> Any:
        call = receive(*args, **kwargs)
        held.append(call)
        return call

    stub.Receive = kept  # type: ignore[method-assign]
    return stub


@pytest.fixture
def fleet(link: Link) -> Iterator[fleet_pb2_grpc.FleetStub]:
    """A Fleet stub; the Receive streams it opens stay open until the test ends."""
    held: list[Any] = []
    with grpc.insecure_channel(link.fleet_address, options=channel_options()) as channel:
        try:
            yield holding_streams(fleet_pb2_grpc.FleetStub(channel), held)
        finally:
            for call in held:
                call.cancel()


@pytest.fixture
def appio_channel(link: Link) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(link.serverappio_address, options=channel_options()) as channel:
        yield channel
