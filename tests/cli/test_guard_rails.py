"""Newcomers' mistakes end in one line that says what to do, exit status 2, no traceback.

These run ``corolla`` in this process (``main``), against no link: each mistake is caught
before anything is started or reached.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corolla.cli import main

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "examples" / "quickstart-numpy")


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``corolla argv``; assert it failed as a usage error; return its one line."""
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COROLLA_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


ADDRESS_OPTIONS = [
    ["run", APP, "--link"],
    ["ls", "--link"],
    ["log", "1", "--link"],
    ["stop", "1", "--link"],
    ["nodes", "--link"],
    ["attach", "1", "--link"],
    ["pull", "1", "--link"],
    ["node", "--link"],
    ["link", "--fleet-address"],
    ["link", "--control-address"],
    ["link", "--metrics-address"],
    ["node", "--link", "127.0.0.1:9092", "--metrics-address"],
]


@pytest.mark.parametrize("command", ADDRESS_OPTIONS, ids=" ".join)
def test_an_address_without_a_port_is_refused(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    message = _fails(capsys, *command, "127.0.0.1")

    assert f"{command[-1]} '127.0.0.1' has no port: write HOST:PORT, e.g. 127.0.0.1:" in message


@pytest.mark.parametrize("command", ADDRESS_OPTIONS, ids=" ".join)
def test_a_port_over_65535_is_refused_not_wrapped(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    message = _fails(capsys, *command, "127.0.0.1:74629")  # 74629 - 65536 = 9093

    assert message.endswith("port 74629 is out of range; ports go from 1 to 65535") or (
        message.endswith("ports go from 0 to 65535")  # a link may listen on port 0
    )


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf"])
def test_a_heartbeat_interval_must_be_a_positive_finite_number(
    interval: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _fails(capsys, "link", "--heartbeat-interval", interval)

    assert message.startswith("--heartbeat-interval must be a number of seconds above 0, got ")


@pytest.mark.parametrize(
    ("option", "target"),
    [
        (["--nodes", "3"], ["--link", "127.0.0.1:9093"]),
        (["--backend", "inline"], ["--link", "127.0.0.1:9093"]),
        (["--workers", "2"], ["--federation", "hospitals"]),
    ],
)
def test_simulation_options_are_refused_on_a_link(
    option: list[str], target: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    message = _fails(capsys, "run", APP, *option, *target)

    assert message.startswith(f"{option[0]} shapes a simulation and means nothing with {target[0]}")


def test_tls_options_are_refused_in_a_simulation(capsys: pytest.CaptureFixture[str]) -> None:
    message = _fails(capsys, "run", APP, "--insecure")

    assert message.startswith("--insecure is for a run on a link")


def test_a_pyproject_without_the_app_table_names_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "pyproject.toml").write_text('[project]\nname = "x"\n')

    message = _fails(capsys, "run", "app")

    path = (tmp_path / "app" / "pyproject.toml").resolve()
    assert message == (
        f"{path} has no [tool.corolla.app] table (a Corolla app) "
        "nor [tool.flwr.app] table (a Flower app)"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("num-server-rounds=five", "run config num-server-rounds wants an integer"),
        ("num-server-rounds=2.5", "wants an integer (its default is 40), got 2.5"),
        ("fraction-train=1.5", "run config fraction-train is a fraction from 0 to 1, got 1.5"),
        ("num-server-rounds=2 fraction-train=2", "fraction-train is a fraction from 0 to 1"),
    ],
)
def test_run_config_values_are_checked_before_the_run(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # With --link at a port nothing listens on: the check comes before any call.
    assert message in _fails(capsys, "run", APP, "--run-config", value, "--link", "127.0.0.1:9")


def test_flowers_quoted_run_config_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            APP,
            "--run-config",
            "num-server-rounds=1 fraction-train=1",
            "--nodes",
            "2",
            "--backend",
            "inline",
            "--quiet",
            "--output",
            "out",
        ]
    )

    assert code == 0, capsys.readouterr().err
    run_config = json.loads((tmp_path / "out" / "run.json").read_text())["run_config"]
    assert run_config["num-server-rounds"] == 1 and run_config["fraction-train"] == 1.0


def test_an_output_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").write_text("notes")

    message = _fails(capsys, "run", APP, "--output", "out")

    assert message == "--output out is a file: give a directory (it is created if missing)"


def test_an_output_holding_other_files_is_refused_even_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "history.json").write_text("{}")
    (tmp_path / "out" / "notes.txt").write_text("mine")

    message = _fails(capsys, "run", APP, "--output", "out", "--force")

    assert message == (
        "--output out holds notes.txt, which a run does not write: give an empty or new directory"
    )


def test_an_earlier_output_is_replaced_only_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.json").write_text("{}")

    message = _fails(capsys, "run", APP, "--output", "out", "--link", "127.0.0.1:9")

    assert message == (
        "--output out holds the outputs of an earlier run (run.json): pass --force to "
        "replace them, or give a new directory"
    )


def test_app_without_federation_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    message = _fails(capsys, "ls", "--app", APP)

    assert message.startswith("--app names the app whose pyproject.toml defines --federation")
