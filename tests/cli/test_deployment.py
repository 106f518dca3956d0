"""The CLI around a run on a real link on 127.0.0.1: waiting, streaming the ServerApp's
output, Ctrl-C and a lost link, then following again, logs, listings and downloads.

The link and nodes run in this process (``Link``, ``Node``); ``corolla`` runs as a
child process where signals and exit statuses matter, in this process otherwise.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.cli import main
from corolla.runtime import Link, Node, NodeStatus

from .commands import Background, source_environment, wait_until

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "quickstart-numpy"

#: A ServerApp that says hello, then waits for two nodes (that never come).
WAITER = {
    "pyproject.toml": """
        [project]
        name = "waiter"
        [tool.corolla.app]
        serverapp = "waiter_app.apps:server"
        clientapp = "waiter_app.apps:client"
    """,
    "waiter_app/__init__.py": "",
    "waiter_app/apps.py": """
        from corolla import ClientApp, ServerApp

        server = ServerApp()
        client = ClientApp()


        @server.main()
        def main(grid, context):
            print("hello from the ServerApp [not markup]", flush=True)
            grid.wait_for_nodes(2, timeout=600)
    """,
}


def _write_app(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Link]:
    # The link starts each run's ServerApp with this process's environment, from the
    # app's directory: this checkout's code must come first on an absolute path there.
    monkeypatch.setenv("PYTHONPATH", source_environment()["PYTHONPATH"])
    with Link(
        tmp_path / "link", fleet_address="127.0.0.1:0", control_address="127.0.0.1:0"
    ) as running:
        yield running


class Lines:
    """The lines a child writes to a pipe, read on a thread as they come."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def join(self) -> str:
        self._thread.join(30)
        return "\n".join(self.lines)


def _follow_child(
    procs: Background, app: Path, control: str
) -> tuple[subprocess.Popen[str], Lines, Lines]:
    child = procs.start("run", "run", str(app), "--link", control, "--output", "out", pipe=True)
    out, err = Lines(child.stdout), Lines(child.stderr)
    wait_until(
        lambda: out.has("waiting for nodes: 0 of 2 connected") or child.poll() is not None,
        "the wait",
    )
    return child, out, err


@pytest.mark.e2e
def test_a_run_without_nodes_says_so_and_goes_on_after_ctrl_c(
    tmp_path: Path, link: Link, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _write_app(tmp_path / "waiter", WAITER)
    control = link.control_address
    procs = Background(tmp_path)
    try:
        child, out, err = _follow_child(procs, app, control)
        child.send_signal(signal.SIGINT)
        code = child.wait(60)
    finally:
        procs.stop_all()
    stdout, stderr = out.join(), err.join()

    # It showed the ServerApp's output as it came, and what it waits for.
    assert "hello from the ServerApp [not markup]" in stdout
    assert "waiting for nodes: 0 of 2 connected" in stdout
    # Ctrl-C: the run goes on, and the commands to follow and stop it are printed.
    assert code == 130, stderr
    (run_id,) = [int(run["run_id"]) for run in _ls(capsys, control)]
    assert f"interrupted: run {run_id} goes on at the link at {control}." in stderr
    follow = f"corolla attach {run_id} --link {control} --output out"
    stop = f"corolla stop {run_id} --link {control}"
    assert f"  follow it: {follow}" in stderr.splitlines()
    assert f"  stop it:   {stop}" in stderr.splitlines()
    assert "Traceback" not in stderr

    # The printed stop command works as printed.
    assert main(shlex.split(stop)[1:]) == 0
    assert f"run {run_id}: stopped" in capsys.readouterr().out


@pytest.mark.e2e
def test_a_lost_link_says_the_run_goes_on_and_how_to_follow_it(tmp_path: Path, link: Link) -> None:
    app = _write_app(tmp_path / "waiter", WAITER)
    control = link.control_address
    procs = Background(tmp_path)
    try:
        child, _, err = _follow_child(procs, app, control)
        link.stop()
        code = child.wait(60)
    finally:
        procs.stop_all()
    stderr = err.join()

    assert code == 1, stderr
    assert stderr.startswith(f"error: lost the link at {control} while following run ")
    assert "  follow it: corolla attach " in stderr and "  stop it:   corolla stop " in stderr
    assert "Traceback" not in stderr


def _ls(capsys: pytest.CaptureFixture[str], *link: str) -> list[dict]:
    assert main(["ls", "--format", "json", "--link", *link]) == 0
    return list(json.loads(capsys.readouterr().out)["runs"])


def _nodes(link: Link, tmp_path: Path) -> list[Node]:
    return [
        Node(
            link.fleet_address,
            tmp_path / f"node{i}",
            node_config={"partition-id": i, "num-partitions": 2},
            attributes={"site": f"h{i}"},
        )
        for i in range(2)
    ]


@pytest.mark.e2e
def test_a_finished_run_is_logged_listed_followed_again_and_pulled(
    tmp_path: Path, link: Link, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    control = link.control_address
    nodes = _nodes(link, tmp_path)
    try:
        for node in nodes:
            node.start()
        wait_until(lambda: all(n.status is NodeStatus.CONNECTED for n in nodes), "the nodes")
        ran = main(
            [
                "run",
                str(APP),
                "--link",
                control,
                "--run-config",
                "num-server-rounds=2",
                "--output",
                "out",
            ]
        )
        run_output = capsys.readouterr().out
        (run,) = _ls(capsys, control)
        run_id = str(run["run_id"])

        assert main(["log", run_id, "--link", control]) == 0
        text_log = capsys.readouterr().out
        assert main(["log", run_id, "--json", "--link", control]) == 0
        json_log = capsys.readouterr().out
        assert main(["nodes", "--format", "json", "--link", control]) == 0
        listed_nodes = json.loads(capsys.readouterr().out)
        assert main(["pull", run_id, "--output", "pulled", "--link", control]) == 0
        pulled = capsys.readouterr().out
        assert main(["attach", run_id, "--output", "attached", "--link", control]) == 0
        attached = capsys.readouterr().out
    finally:
        for node in nodes:
            node.stop()

    assert ran == 0 and "Run summary" in run_output
    # ls --format json: one document, stable keys.
    assert set(run) == {
        "run_id",
        "app",
        "bundle_sha256",
        "bundle_signers",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "reason",
        "run_config",
    }
    assert run["status"] == "finished" and run["run_config"]["num-server-rounds"] == 2
    # log reads as sentences; --json gives one event a line.
    assert "round 2 ended: " in text_log and "run finished" in text_log
    assert not any(line.lstrip().startswith("{") for line in text_log.splitlines())
    events = [json.loads(line) for line in json_log.splitlines()]
    assert {"sequence", "run_id", "kind", "round", "node_id", "time", "data"} == set(events[0])
    assert events[-1]["kind"] in ("run.end", "run.collected")
    # nodes --format json.
    assert sorted(n["attributes"]["site"] for n in listed_nodes["nodes"]) == ["h0", "h1"]
    assert set(listed_nodes["nodes"][0]) == {
        "node_id",
        "status",
        "attributes",
        "node_config",
        "registered_at",
        "last_heartbeat_at",
    }
    # pull and attach write what `corolla run --link` wrote.
    for directory in ("out", "pulled", "attached"):
        names = sorted(p.name for p in (tmp_path / directory).iterdir())
        assert names == [
            "final.npz",
            "history.json",
            "metrics.png",
            "report.html",
            "run.json",
        ], directory
    assert "Run summary" in pulled and "Run summary" in attached
    assert (tmp_path / "pulled" / "history.json").read_text() == (
        tmp_path / "out" / "history.json"
    ).read_text()


def test_ls_and_nodes_read_a_federation_from_the_app_directory(
    tmp_path: Path, link: Link, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _write_app(tmp_path / "app", WAITER)
    with (app / "pyproject.toml").open("a") as pyproject:
        pyproject.write(
            f'\n[tool.corolla.federations.local]\naddress = "{link.control_address}"\n'
            "insecure = true\n"
        )

    assert main(["ls", "--federation", "local", "--app", str(app), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    monkeypatch.chdir(app)  # --app defaults to the current directory
    assert main(["nodes", "--federation", "local", "--format", "json"]) == 0
    nodes = json.loads(capsys.readouterr().out)

    assert listed == {"link": link.control_address, "runs": []}
    assert nodes == {"link": link.control_address, "nodes": []}


def test_a_tls_link_without_certificates_is_one_line_saying_what_to_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", str(tmp_path / "certs")]) == 0
    capsys.readouterr()
    with Link(
        tmp_path / "tls",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        certificates=tmp_path / "certs",
    ) as tls:
        without = main(["ls", "--link", tls.control_address])
        without_err = capsys.readouterr().err
        fleet = main(
            [
                "nodes",
                "--link",
                tls.fleet_address,
                "--root-certificates",
                str(tmp_path / "certs" / "ca.pem"),
            ]
        )
        fleet_err = capsys.readouterr().err
        with_ca = main(
            [
                "ls",
                "--link",
                tls.control_address,
                "--root-certificates",
                str(tmp_path / "certs" / "ca.pem"),
            ]
        )

    assert without == 2
    assert without_err == (
        f"error: the link at {tls.control_address} serves TLS: give its CA certificate with "
        "--root-certificates FILE (the ca.pem that `corolla certs` wrote)\n"
    )
    assert fleet == 2 and fleet_err.startswith(
        f"error: {tls.fleet_address} is not the link's Control API"
    )
    assert with_ca == 0


def test_certificates_against_a_plain_link_are_refused_in_one_line(
    tmp_path: Path, link: Link, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", str(tmp_path / "certs")]) == 0
    capsys.readouterr()

    code = main(
        [
            "ls",
            "--link",
            link.control_address,
            "--root-certificates",
            str(tmp_path / "certs" / "ca.pem"),
        ]
    )

    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: the link at {link.control_address} serves without TLS: ")
    assert "leave out --root-certificates" in err


#: FedAvg over a ClientApp that always raises.
FAILING = {
    "pyproject.toml": """
        [project]
        name = "failing"
        [tool.corolla.app]
        serverapp = "failing_app.apps:server"
        clientapp = "failing_app.apps:client"
        [tool.corolla.app.config]
        num-server-rounds = 2
        [tool.corolla.app.simulation]
        num-nodes = 2
    """,
    "failing_app/__init__.py": "",
    "failing_app/apps.py": """
        import numpy as np

        from corolla import ArrayRecord, ClientApp, FedAvg, ServerApp

        server = ServerApp()
        client = ClientApp()


        @client.train()
        def train(message, context):
            raise ValueError("the data loader cannot find its files")


        @server.main()
        def main(grid, context):
            strategy = FedAvg(fraction_evaluate=0.0, min_available_nodes=2)
            initial = ArrayRecord({"w": np.zeros(3, dtype=np.float32)})
            strategy.start(grid, initial, int(context.run_config["num-server-rounds"]))
    """,
}


@pytest.mark.e2e
@pytest.mark.parametrize("where", ["simulation", "deployment"])
def test_a_run_whose_every_reply_failed_ends_failed_with_the_first_error(
    where: str,
    tmp_path: Path,
    link: Link,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    app = _write_app(tmp_path / "app", FAILING)
    target = ["--link", link.control_address] if where == "deployment" else ["--nodes", "2"]
    nodes = _nodes(link, tmp_path) if where == "deployment" else []
    try:
        for node in nodes:
            node.start()

        status = main(["run", str(app), *target, "--output", "out", "--quiet"])
    finally:
        for node in nodes:
            node.stop()

    error = capsys.readouterr().err
    assert status == 1
    assert "every training reply of the run failed (4 over 2 rounds)" in error
    assert "CLIENT_APP_RAISED" in error and "the data loader cannot find its files" in error
    assert "Traceback" not in error
    assert not (tmp_path / "out" / "final.npz").exists()
