"""``corolla keys``: signing keys for app bundles, made once and shown; and the commands
that take a policy or a signing key refuse a bad one before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from corolla.cli._main import main
from corolla.trust import SigningKey

ROOT = Path(__file__).resolve().parents[2]


def test_keys_create_writes_a_key_and_show_prints_its_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Act
    created = main(["keys", "create", str(tmp_path / "publisher.pem")])
    printed = capsys.readouterr().out
    shown = main(["keys", "show", str(tmp_path / "publisher.pem")])

    # Assert: the public key alone on standard output, both times
    assert (created, shown) == (0, 0)
    assert printed.strip() == SigningKey.load(tmp_path / "publisher.pem").public_text
    assert capsys.readouterr().out == printed


def test_keys_create_never_overwrites_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Arrange
    path = tmp_path / "precious.pem"
    path.write_text("not mine to replace")

    # Act
    status = main(["keys", "create", str(path)])

    # Assert
    assert status == 2
    assert "never overwritten" in capsys.readouterr().err
    assert path.read_text() == "not mine to replace"


def test_keys_show_of_a_missing_file_says_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "show", str(tmp_path / "none.pem")]) == 2
    assert "corolla keys create" in capsys.readouterr().err


def test_a_signing_key_means_nothing_in_a_simulation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Arrange
    main(["keys", "create", str(tmp_path / "k.pem")])
    capsys.readouterr()

    # Act
    app = ROOT / "examples" / "quickstart-numpy"
    status = main(["run", str(app), "--signing-key", str(tmp_path / "k.pem")])

    # Assert
    assert status == 2
    assert "--signing-key is for a run on a link" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["link", "node"])
def test_a_bad_policy_file_stops_the_daemon_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    # Arrange
    policy = tmp_path / "policy.toml"
    policy.write_text("[apps]\nallowed-bundles = ['nope']\n")
    extra = ["--link", "127.0.0.1:9"] if command == "node" else ["--fleet-address", "127.0.0.1:0"]

    # Act
    status = main([command, "--state", str(tmp_path / "state"), "--policy", str(policy), *extra])

    # Assert: the file, the key and what it takes; nothing was started
    assert status == 2
    error = capsys.readouterr().err
    assert f"{command} policy {policy}" in error and "allowed-bundles[0]" in error
    assert not (tmp_path / "state").exists()
