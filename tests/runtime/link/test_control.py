"""The Control API: submitting, following, listing and stopping runs."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.core import ConfigError
from corolla.runtime import ControlClient, Link
from corolla.transport import run_pb2


def _app(root: Path, module: str, server_source: str) -> Path:
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "server_app.py").write_text(textwrap.dedent(server_source))
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "{module}"
            [tool.corolla.app]
            serverapp = "{module}.server_app:app"
            clientapp = "{module}.server_app:app"
            [tool.corolla.app.config]
            rounds = 1
            """
        )
    )
    return root


RAISING = """
from corolla.server import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    raise RuntimeError("the server app gave up")
"""

WAITING = """
import time

from corolla.core import Event
from corolla.server import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    grid.emit(Event("waiting", grid.run_id))
    time.sleep(120)
"""


COLOURED = """
from corolla.server import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    print("\\x1b[92mINFO \\x1b[0m:      [ROUND 1/3]", flush=True)
"""


@pytest.fixture
def client(link: Link) -> Iterator[ControlClient]:
    with ControlClient(link.control_address) as control:
        yield control


def test_an_unknown_run_config_key_is_refused(client: ControlClient, tmp_path: Path) -> None:
    app = _app(tmp_path / "app", "raising_app", RAISING)
    with pytest.raises(ConfigError, match="unknown run config key"):
        client.submit(app, {"typo": 1})
    assert client.list_runs() == []


def test_a_failing_server_app_fails_its_run_with_the_traceback(
    client: ControlClient, tmp_path: Path
) -> None:
    app = _app(tmp_path / "app", "raising_app", RAISING)
    run = client.submit(app, {"rounds": 2})

    events = [event for _, event in client.events(run.run_id, timeout=60)]

    assert events[-1].kind == "run.end"
    assert events[-1].data["status"] == "failed"
    final = client.get_run(run.run_id)
    assert final.status == run_pb2.RUN_STATUS_FAILED
    assert "the server app gave up" in final.status_reason
    assert final.app_name == "raising_app"
    assert final.run_config.entries[0].value.int_value == 2
    assert [r.run_id for r in client.list_runs()] == [run.run_id]


def test_stopping_a_run_ends_its_process(client: ControlClient, tmp_path: Path) -> None:
    run = client.submit(_app(tmp_path / "app", "waiting_app", WAITING))
    events = client.events(run.run_id, timeout=60)
    for _, event in events:
        if event.kind == "waiting":
            break

    stopped = client.stop_run(run.run_id, "enough")
    rest = [event for _, event in events]

    assert stopped.status == run_pb2.RUN_STATUS_STOPPED
    assert stopped.status_reason == "enough"
    # The run's end tells the user's reason, not the signal that ended its process.
    assert rest[-1].kind == "run.end"
    assert (rest[-1].data["status"], rest[-1].data["reason"]) == ("stopped", "enough")
    assert client.stop_run(run.run_id).status == run_pb2.RUN_STATUS_STOPPED  # no change


def test_the_server_app_s_output_is_logged_without_terminal_colours(
    client: ControlClient, tmp_path: Path
) -> None:
    run = client.submit(_app(tmp_path / "app", "coloured_app", COLOURED))

    lines = [e.data["line"] for _, e in client.events(run.run_id, timeout=60) if e.kind == "log"]

    assert "INFO :      [ROUND 1/3]" in lines
