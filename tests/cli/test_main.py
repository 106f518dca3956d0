"""The ``corolla`` command, run as a real process, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corolla.cli._main import exit_code
from corolla.core._errors import AppLoadError, ConfigError, ExecutionError

from .commands import source_environment

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def corolla(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corolla", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
        env=source_environment(),  # this checkout's code, from whatever directory
    )


def _history(output: Path) -> list[dict]:
    return json.loads((output / "history.json").read_text())["rounds"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "example", ["quickstart-numpy", "quickstart-pytorch", "quickstart-sklearn"]
)
def test_each_example_runs_through_the_cli_and_writes_its_outputs(tmp_path, example):
    if example == "quickstart-pytorch":
        pytest.importorskip("torch")
    output = tmp_path / "out"

    result = corolla(
        "run",
        str(EXAMPLES / example),
        "--run-config",
        "num-server-rounds=3",
        "--nodes",
        "10",
        "--output",
        str(output),
    )

    assert result.returncode == 0, result.stderr
    rounds = _history(output)
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert set(rounds[1]) >= {"round", "train", "evaluate", "server"}
    assert 0.0 <= rounds[3]["server"]["accuracy"] <= 1.0
    assert "train-loss" in rounds[3]["train"]
    with np.load(output / "final.npz") as final:
        assert final.files and all(final[name].size > 0 for name in final.files)
    assert (output / "metrics.png").read_bytes().startswith(b"\x89PNG")
    assert "Run summary" in result.stdout


@pytest.mark.e2e
def test_same_seed_same_bits_across_backends_through_the_cli(tmp_path):
    finals = []
    for backend in ("inline", "process"):
        output = tmp_path / backend
        result = corolla(
            "run",
            str(EXAMPLES / "quickstart-numpy"),
            "--run-config",
            "num-server-rounds=2",
            "--nodes",
            "8",
            "--backend",
            backend,
            "--seed",
            "3",
            "--quiet",
            "--output",
            str(output),
        )
        assert result.returncode == 0, result.stderr
        with np.load(output / "final.npz") as final:
            finals.append({k: final[k].copy() for k in final.files})

    for name in finals[0]:
        assert finals[0][name].tobytes() == finals[1][name].tobytes()


@pytest.mark.e2e
@pytest.mark.parametrize("framework", ["numpy", "pytorch", "sklearn"])
def test_new_app_runs_at_once(tmp_path, framework):
    if framework == "pytorch":
        pytest.importorskip("torch")
    if framework == "sklearn":
        pytest.importorskip("sklearn")

    created = corolla("new", "my-app", "--framework", framework, cwd=tmp_path)
    run = corolla(
        "run",
        "my-app",
        "--run-config",
        "num-server-rounds=2",
        "--nodes",
        "4",
        "--output",
        "out",
        "--quiet",
        cwd=tmp_path,
    )

    assert created.returncode == 0, created.stderr
    assert run.returncode == 0, run.stderr
    assert len(_history(tmp_path / "out")) >= 2


def test_new_refuses_an_existing_directory_and_a_bad_name(tmp_path):
    (tmp_path / "taken").mkdir()

    assert corolla("new", "taken", cwd=tmp_path).returncode == 2
    bad = corolla("new", "9lives", cwd=tmp_path)
    assert bad.returncode == 2
    assert "must start with a letter" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "does-not-exist"], "does not exist"),
        (
            ["run", str(EXAMPLES / "quickstart-numpy"), "--run-config", "nope=1"],
            "unknown run config",
        ),
        (["run", str(EXAMPLES / "quickstart-numpy"), "--nodes", "0"], "--nodes must be >= 1"),
    ],
)
def test_usage_errors_exit_2_with_a_message(args, message):
    result = corolla(*args)

    assert result.returncode == 2
    assert message in result.stderr


def test_exit_codes_follow_error_codes():
    assert exit_code(ConfigError("x")) == 2
    assert exit_code(AppLoadError("x")) == 2
    assert exit_code(ExecutionError("x")) == 1


def test_no_command_prints_help():
    result = corolla()

    assert result.returncode == 2
    assert "usage: corolla" in result.stdout


def test_an_unknown_federation_is_a_usage_error():
    result = corolla("run", str(EXAMPLES / "quickstart-numpy"), "--federation", "nowhere")

    assert result.returncode == 2
    assert "no federation 'nowhere'" in result.stderr


def test_certs_writes_a_ca_and_certificates_and_refuses_to_overwrite(tmp_path):
    first = corolla("certs", str(tmp_path / "certs"), "--hostname", "link.example.org")
    again = corolla("certs", str(tmp_path / "certs"))

    assert first.returncode == 0, first.stderr
    for name in ("ca.pem", "link.pem", "link.key", "node.pem", "node.key"):
        assert (tmp_path / "certs" / name).is_file()
    assert again.returncode == 2
