"""``corolla link`` and ``corolla node`` on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from corolla.cli import main
from corolla.runtime import Link
from corolla.transport import generate_certificates


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


def _node(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``corolla node`` with these arguments, as a process of its own; it must end."""
    return subprocess.run(
        [sys.executable, "-m", "corolla", "node", "--state", str(tmp_path / "node"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COROLLA_HOME=str(tmp_path / "home")),
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_node_given_a_ca_file_it_cannot_use_ends_with_an_error(tmp_path: Path) -> None:
    not_a_certificate = tmp_path / "ca.pem"
    not_a_certificate.write_text("not a certificate\n")

    missing = _node(tmp_path, "--link", "127.0.0.1:1", "--root-certificates", "nowhere.pem")
    unreadable = _node(
        tmp_path, "--link", "127.0.0.1:1", "--root-certificates", str(not_a_certificate)
    )

    assert missing.returncode == 2
    assert len(_error_lines(missing.stderr)) == 1
    assert "cannot read the CA 'nowhere.pem'" in missing.stderr
    assert unreadable.returncode == 2
    (line,) = _error_lines(unreadable.stderr)
    assert "holds no PEM certificate" in line and "ca.pem" in line


def test_a_node_whose_ca_did_not_sign_the_link_s_certificate_ends_with_an_error(
    tmp_path: Path,
) -> None:
    # Arrange: a link serving TLS with one CA's certificate, a node trusting another CA
    served = generate_certificates(tmp_path / "link-certs")
    other = generate_certificates(tmp_path / "other-certs")
    with Link(
        tmp_path / "link",
        fleet_address="127.0.0.1:0",
        control_address="127.0.0.1:0",
        certificates=served.directory,
    ) as link:
        # Act
        ended = _node(
            tmp_path,
            "--link",
            f"localhost:{link.fleet_port}",
            "--root-certificates",
            str(other.ca_certificate),
        )

        # Assert
        assert link.state.list_nodes() == []
    assert ended.returncode == 2
    (line,) = _error_lines(ended.stderr)
    assert "TLS handshake" in line and "--root-certificates" in line


def test_a_node_given_the_link_s_control_address_ends_with_an_error(tmp_path: Path) -> None:
    with Link(
        tmp_path / "link", fleet_address="127.0.0.1:0", control_address="127.0.0.1:0"
    ) as link:
        ended = _node(tmp_path, "--link", link.control_address)

    assert ended.returncode == 2
    (line,) = _error_lines(ended.stderr)
    assert "no Fleet service answers" in line and "--link" in line
