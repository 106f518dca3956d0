"""``corolla new`` prints next steps that work as printed."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from corolla.cli._main import build_parser
from corolla.runtime import ControlClient

from .commands import Background, corolla, free_port, wait_until

FEW_ROUNDS = ["--run-config", "num-server-rounds=1"]


def _online(control: int) -> int:
    with ControlClient(f"127.0.0.1:{control}") as client:
        try:
            return sum(node.status == 1 for node in client.list_nodes())
        except ConnectionError:  # the link is still starting
            return 0


def _printed_commands(stdout: str) -> list[list[str]]:
    return [
        shlex.split(line, comments=True)
        for line in stdout.splitlines()
        if line.startswith("  corolla ")
    ]


@pytest.mark.e2e
def test_the_printed_next_steps_run(tmp_path: Path) -> None:
    created = corolla(tmp_path, "new", "my-app", "--dir", "apps")
    assert created.returncode == 0, created.stderr
    commands = _printed_commands(created.stdout)
    simulations = [c for c in commands if c[1] == "run" and "--link" not in c]
    deployment = [c for c in commands if c not in simulations]
    assert len(simulations) == 2 and [c[1] for c in deployment] == ["link", "node", "node", "run"]
    for command in commands:  # every printed command parses as printed
        build_parser().parse_args(command[1:])

    # The simulations as printed, with one round over 4 nodes to keep the test short.
    for number, command in enumerate(simulations):
        run = corolla(tmp_path, *command[1:], *FEW_ROUNDS, "--nodes", "4", "--output", f"s{number}")
        assert run.returncode == 0, run.stderr
        assert (tmp_path / f"s{number}" / "history.json").is_file()

    # The deployment as printed, on free ports instead of 9092 and 9093 (which another
    # link on this machine may hold).
    fleet, control = free_port(), free_port()
    ports = {"127.0.0.1:9092": f"127.0.0.1:{fleet}", "127.0.0.1:9093": f"127.0.0.1:{control}"}
    link, *nodes, submit = [[ports.get(arg, arg) for arg in c[1:]] for c in deployment]
    procs = Background(tmp_path)
    try:
        procs.start(
            "link",
            *link,
            "--state",
            str(tmp_path / "link"),
            "--fleet-address",
            f"127.0.0.1:{fleet}",
            "--control-address",
            f"127.0.0.1:{control}",
        )
        for number, node in enumerate(nodes):
            procs.start(f"node{number}", *node)
        wait_until(lambda: _online(control) == 2, "two nodes coming online")
        run = corolla(tmp_path, *submit, *FEW_ROUNDS, "--output", "deployed", "--quiet")
    finally:
        procs.stop_all()
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "deployed" / "final.npz").is_file()
