"""LinkLimits: checked figures, and a link that reads its time and limits where it is told."""

from __future__ import annotations

import math
import time
from pathlib import Path

import grpc
import pytest

from corolla.core import ConfigError
from corolla.runtime import Link, LinkLimits, ManualClock
from corolla.state import MemoryBlobStore, SqliteLinkState
from corolla.transport import channel_options, fleet_pb2, fleet_pb2_grpc


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heartbeat_interval", 0.0),
        ("heartbeat_interval", -1.0),
        ("heartbeat_interval", math.nan),
        ("heartbeat_interval", math.inf),
        ("sweep_interval", True),
        ("download_streams", 0),
        ("upload_streams", 1.5),
        ("named_grace_s", "120"),
    ],
)
def test_a_limit_that_is_not_a_positive_finite_figure_is_refused(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        LinkLimits(**{field: value})  # type: ignore[arg-type]


def test_the_defaults_are_accepted() -> None:
    limits = LinkLimits()

    assert limits.download_streams == 8 and limits.upload_streams == 4
    assert limits.heartbeat_interval > 0


def test_a_link_marks_a_node_offline_when_its_clock_passes_the_heartbeat_tolerance(
    tmp_path: Path,
) -> None:
    # Arrange: a link whose clock moves only by hand, sweeping often, with a state and a
    # blob store of the test's own.
    clock = ManualClock()
    state = SqliteLinkState(tmp_path / "state.db", clock=clock.time)
    limits = LinkLimits(heartbeat_interval=30.0, sweep_interval=0.02)
    with (
        Link(
            tmp_path / "link",
            fleet_address="127.0.0.1:0",
            control_address="127.0.0.1:0",
            state=state,
            blobs=MemoryBlobStore(),
            clock=clock,
            limits=limits,
        ) as link,
        grpc.insecure_channel(link.fleet_address, options=channel_options()) as channel,
    ):
        fleet = fleet_pb2_grpc.FleetStub(channel)
        registered = fleet.RegisterNode(fleet_pb2.RegisterNodeRequest(), timeout=10)
        time.sleep(0.2)  # sweeps while the clock stands still
        online_before = link.state.get_node(registered.node_id).online

        # Act: three heartbeat intervals pass on the link's clock, none in real time
        clock.advance(3 * limits.heartbeat_interval + 1)
        deadline = time.monotonic() + 10
        while link.state.get_node(registered.node_id).online and time.monotonic() < deadline:
            time.sleep(0.02)

        # Assert
        assert registered.heartbeat_interval == limits.heartbeat_interval
        assert online_before
        assert not link.state.get_node(registered.node_id).online
    # the link kept what it was given, not a state and blobs of its own
    assert not (tmp_path / "link" / "state.db").exists()
    assert not (tmp_path / "link" / "blobs").exists()
