"""What the link refuses: oversized settings, an unloadable app. Each refusal is one clear
error that names no path of the link's machine, and keeps none of the request's memory."""

from __future__ import annotations

import gc
import textwrap
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from corolla.core import ConfigError, CorollaError
from corolla.runtime import ControlClient, Link
from corolla.transport import (
    control_pb2,
    control_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    run_pb2,
    user_config_to_proto,
)
from corolla.tuning import GC_THRESHOLDS


@pytest.fixture
def fleet(link: Link) -> Iterator[fleet_pb2_grpc.FleetStub]:
    with grpc.insecure_channel(link.fleet_address) as channel:
        yield fleet_pb2_grpc.FleetStub(channel)


def _registration(attribute_bytes: int) -> fleet_pb2.RegisterNodeRequest:
    return fleet_pb2.RegisterNodeRequest(
        attributes=user_config_to_proto({"blob": "x" * attribute_bytes})
    )


def test_a_registration_with_oversized_attributes_is_refused_naming_the_limit(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        fleet.RegisterNode(_registration(100_000), timeout=10)

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 65536" in (refused.value.details() or "")
    assert link.state.list_nodes() == []


def test_refused_registrations_do_not_keep_their_memory(
    link: Link, fleet: fleet_pb2_grpc.FleetStub
) -> None:
    # Arrange: the garbage collector as `corolla link` sets it (rare collections), and
    # one 20 MiB registration, sent again and again.
    request = _registration(20 * 1024 * 1024)
    process = psutil.Process()
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        with pytest.raises(grpc.RpcError):
            fleet.RegisterNode(request, timeout=30)  # buffers of a first call warmed up
        before = process.memory_info().rss

        # Act
        for _ in range(40):
            with pytest.raises(grpc.RpcError):
                fleet.RegisterNode(request, timeout=30)
        grown = process.memory_info().rss - before
    finally:
        gc.set_threshold(*thresholds)

    # Assert: 40 requests of 20 MiB kept would be 800 MiB
    assert grown < 200 * 1024 * 1024


def test_an_oversized_run_config_is_refused_before_the_bundle_is_read(
    link: Link, tmp_path: Path
) -> None:
    app = _app(tmp_path / "app", valid=True)

    with ControlClient(link.control_address) as client, pytest.raises(ConfigError) as refused:
        client.submit(app, {"notes": "x" * 100_000})

    assert "the run config takes" in str(refused.value)
    assert link.state.list_runs() == []


def test_an_app_the_link_cannot_load_is_refused_without_the_link_s_paths(
    link: Link, tmp_path: Path
) -> None:
    app = _app(tmp_path / "app", valid=False)

    with ControlClient(link.control_address) as client, pytest.raises(CorollaError) as refused:
        client.submit(app)

    message = str(refused.value)
    assert "tool.corolla.app" in message
    assert str(link.state_dir) not in message
    assert "<bundle " in message


def _app(root: Path, *, valid: bool) -> Path:
    root.mkdir(parents=True)
    table = '[tool.corolla.app]\nserverapp = "app:server"\nclientapp = "app:client"\n'
    (root / "pyproject.toml").write_text(
        textwrap.dedent('[project]\nname = "refused"\n') + (table if valid else "")
    )
    (root / "app.py").write_text("server = client = None\n")
    return root


@pytest.mark.parametrize("run_id", [2**63, 2**63 + 5, 2**64 - 1])
def test_run_ids_beyond_what_the_state_holds_are_unknown_not_internal(
    link: Link, run_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    with grpc.insecure_channel(link.control_address) as channel:
        control = control_pb2_grpc.ControlStub(channel)
        calls = [
            lambda: control.GetRun(run_pb2.GetRunRequest(run_id=run_id), timeout=10),
            lambda: control.StopRun(control_pb2.StopRunRequest(run_id=run_id), timeout=10),
            lambda: control.GetRunResult(
                control_pb2.GetRunResultRequest(run_id=run_id), timeout=10
            ),
        ]
        codes = []
        for call in calls:
            with pytest.raises(grpc.RpcError) as refused:
                call()
            codes.append(refused.value.code())

    assert codes == [grpc.StatusCode.NOT_FOUND] * len(calls)
    assert "Traceback" not in caplog.text
