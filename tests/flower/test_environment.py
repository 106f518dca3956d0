"""Corolla and flwr in one environment and one process: the ``flower`` extra resolves,
both import without a warning, and Corolla's gRPC code runs beside Flower's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

IMPORTS = textwrap.dedent(
    """
    import corolla, corolla.runtime, corolla.simulation, corolla.cli
    import flwr, flwr.app, flwr.clientapp, flwr.serverapp, flwr.server, flwr.client
    import flwr.simulation, flwr.serverapp.strategy, flwr.server.strategy
    print(flwr.__version__)
    """
)


def test_the_installed_flwr_and_protobuf_meet_the_flower_extra() -> None:
    wanted = [
        Requirement(r)
        for r in metadata.requires("corolla") or []
        if "extra ==" in r and "flower" in r
    ]
    assert {w.name for w in wanted} >= {"flwr"}
    for requirement in wanted:
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed), (requirement, installed)
    core = next(
        Requirement(r) for r in metadata.requires("corolla") or [] if r.startswith("protobuf")
    )
    assert core.specifier.contains(metadata.version("protobuf"))


def test_corolla_and_flwr_import_together_without_a_warning() -> None:
    # Arrange: warnings are errors, in a fresh interpreter (this one imported both already)
    command = [sys.executable, "-W", "error", "-c", IMPORTS]

    # Act
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)

    # Assert
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip().startswith("1.4")


def test_corolla_grpc_runs_in_a_process_that_imported_flwr(tmp_path: Path) -> None:
    # Arrange: Flower's generated protobuf modules are loaded first
    import flwr.proto.message_pb2  # noqa: F401

    from corolla.runtime import ControlClient, Link

    # Act: a real link, asked over its Control API
    with (
        Link(tmp_path / "link", fleet_address="127.0.0.1:0", control_address="127.0.0.1:0") as link,
        ControlClient(link.control_address) as client,
    ):
        nodes = client.list_nodes()
        runs = client.list_runs()

    # Assert
    assert list(nodes) == [] and list(runs) == []
