"""``corolla ls / log / nodes / stop`` against a real link and node, with relative paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from corolla.runtime import ControlClient
from tests.runtime.test_e2e import _free_port, _wait_for_nodes

from .commands import Background, corolla

APP = Path(__file__).resolve().parents[2] / "examples" / "quickstart-numpy"


def _corolla(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # This checkout's code, whatever the directory the command runs in (commands.py).
    return corolla(cwd, *args, timeout=180)


@pytest.mark.e2e
def test_control_commands_follow_a_run(tmp_path, monkeypatch):
    fleet, control = _free_port(), _free_port()
    monkeypatch.chdir(tmp_path)
    procs = Background(tmp_path)
    try:
        # Relative state directories: the link's run processes must still find them.
        procs.start(
            "link",
            "link",
            "--state",
            "link-state",
            "--fleet-address",
            f"127.0.0.1:{fleet}",
            "--control-address",
            f"127.0.0.1:{control}",
        )
        for i in range(2):
            procs.start(
                f"node{i}",
                "node",
                "--link",
                f"127.0.0.1:{fleet}",
                "--state",
                f"node{i}",
                "--node-config",
                f"partition-id={i}",
                "num-partitions=2",
                "--attributes",
                f"site=h{i}",
            )
        with ControlClient(f"127.0.0.1:{control}") as client:
            _wait_for_nodes(client, 2, procs)
        link = ("--link", f"127.0.0.1:{control}")

        run = _corolla(
            tmp_path, "run", str(APP), *link, "--run-config", "num-server-rounds=2", "--quiet"
        )
        with ControlClient(f"127.0.0.1:{control}") as client:
            (only,) = client.list_runs()
        ls = _corolla(tmp_path, "ls", *link)
        log = _corolla(tmp_path, "log", str(only.run_id), *link)
        nodes = _corolla(tmp_path, "nodes", *link)
        stop = _corolla(tmp_path, "stop", str(only.run_id), *link)
        unknown = _corolla(tmp_path, "log", "12345", *link)
    finally:
        procs.stop_all()

    assert run.returncode == 0, run.stderr
    assert ls.returncode == 0 and str(only.run_id) in ls.stdout and "finished" in ls.stdout
    assert log.returncode == 0 and "round 2 ended: " in log.stdout
    assert nodes.returncode == 0 and "site=h0" in nodes.stdout and "site=h1" in nodes.stdout
    assert stop.returncode == 0 and "finished" in stop.stdout
    assert unknown.returncode == 1 and "unknown run id 12345" in unknown.stderr
