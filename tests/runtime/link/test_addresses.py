"""The link's addresses: one port per API, and a port another server holds is refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from corolla.core import ConfigError
from corolla.runtime import ControlClient, Link


def test_fleet_and_control_on_one_port_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both use port 9200"):
        Link(tmp_path, fleet_address="127.0.0.1:9200", control_address="127.0.0.1:9200")


def test_metrics_on_the_fleet_port_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--fleet-address and --metrics-address"):
        Link(
            tmp_path,
            fleet_address="127.0.0.1:9200",
            control_address="127.0.0.1:0",
            metrics_address="127.0.0.1:9200",
        )


def test_a_second_link_on_the_ports_of_a_running_one_is_refused_and_the_first_serves_on(
    link: Link, tmp_path: Path
) -> None:
    # Arrange: a second link asking for the first one's fleet port
    second = Link(
        tmp_path / "second",
        fleet_address=link.fleet_address,
        control_address="127.0.0.1:0",
    )

    # Act
    with pytest.raises(ConfigError, match="in use") as refused:
        second.start()

    # Assert: one line, and the first link still answers
    assert "\n" not in str(refused.value)
    with ControlClient(link.control_address) as client:
        assert client.list_runs() == []


def test_a_second_link_on_the_control_port_of_a_running_one_is_refused(
    link: Link, tmp_path: Path
) -> None:
    second = Link(
        tmp_path / "second",
        fleet_address="127.0.0.1:0",
        control_address=link.control_address,
    )

    with pytest.raises(ConfigError, match=f"cannot listen on {link.control_address}"):
        second.start()

    with grpc.insecure_channel(link.fleet_address) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
