"""``corolla link`` and ``corolla node`` on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from corolla.cli import main


def test_link_refuses_to_listen_beyond_loopback_without_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COROLLA_HOME", str(tmp_path))
    assert main(["link", "--fleet-address", "0.0.0.0:0"]) == 2
    assert "--insecure" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["link", "node"])
def test_the_commands_have_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "--insecure" in capsys.readouterr().out
