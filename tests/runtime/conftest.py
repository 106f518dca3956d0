"""A running link on ephemeral loopback ports, and stubs to call it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def fleet(link: Link) -> Iterator[fleet_pb2_grpc.FleetStub]:
    with grpc.insecure_channel(link.fleet_address, options=channel_options()) as channel:
        yield fleet_pb2_grpc.FleetStub(channel)


@pytest.fixture
def appio_channel(link: Link) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(link.serverappio_address, options=channel_options()) as channel:
        yield channel
