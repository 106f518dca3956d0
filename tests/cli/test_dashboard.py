"""``corolla dashboard``: the dashboard over local runs, as a user starts it."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest

from corolla.cli._main import main

from .commands import Background, free_port, wait_until


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.e2e
def test_the_dashboard_serves_the_runs_of_corolla_home_until_interrupted(tmp_path):
    (tmp_path / "home" / "runs").mkdir(parents=True)
    port = free_port()
    background = Background(tmp_path)
    try:
        child = background.start("dashboard", "dashboard", "--address", f"127.0.0.1:{port}")
        wait_until(
            lambda: child.poll() is None and _answers(f"http://127.0.0.1:{port}/api/runs"),
            "the dashboard answering",
            seconds=30,
        )
        me = httpx.get(f"http://127.0.0.1:{port}/api/me", timeout=2).json()
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
        child.send_signal(signal.SIGINT)
        code = child.wait(10)
    finally:
        background.stop_all()

    assert me["runs"] == str(tmp_path / "home" / "runs")
    assert '<script src="/static/app.js">' in page
    assert code == 0
    assert f"http://127.0.0.1:{port}/" in (tmp_path / "dashboard.log").read_text()


def test_a_missing_runs_directory_is_a_clear_error(tmp_path, capsys):
    code = main(["dashboard", "--runs", str(tmp_path / "nowhere"), "--address", "127.0.0.1:0"])

    err = capsys.readouterr().err
    assert code == 2
    assert f"the runs directory {tmp_path / 'nowhere'} does not exist" in err


def test_a_busy_port_is_a_clear_error(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["dashboard", "--runs", str(tmp_path), "--address", f"127.0.0.1:{port}"])

    assert code == 2
    assert f"cannot serve the dashboard on 127.0.0.1:{port}" in capsys.readouterr().err


def test_an_address_beyond_loopback_is_refused_without_insecure(tmp_path, capsys):
    code = main(["dashboard", "--runs", str(tmp_path), "--address", "0.0.0.0:0"])

    assert code == 2
    assert "--insecure" in capsys.readouterr().err
