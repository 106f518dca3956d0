"""``corolla run --track``: a simulation logs its config, each round's metrics and its
outputs to MLflow or TensorBoard, read back with their own readers; bad options fail
before the run starts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from corolla.cli._main import main
from corolla.cli._tracking import say_tracked
from corolla.server import History
from corolla.tracking import TrackingSettings, open_tracker

from ..tracking.readers import (
    assert_close_series,
    history_metrics,
    mlflow_metrics,
    mlflow_run,
    tensorboard_run,
    tensorboard_scalars,
    tensorboard_text,
)
from .commands import source_environment

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "quickstart-numpy"
SMALL = ["--run-config", "num-server-rounds=2", "--nodes", "4", "--backend", "inline"]


def _run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``corolla run args`` in ``cwd``, with ``env`` (and no ``$MLFLOW_TRACKING_URI`` but
    one it sets)."""
    environment = source_environment()
    environment.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "corolla", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**environment, **(env or {})},
    )


def _tracked_app(tmp_path: Path, table: str) -> Path:
    """The quickstart app with ``table`` as its ``[tool.corolla.app.tracking]``."""
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    with (app / "pyproject.toml").open("a") as file:
        file.write(f"\n[tool.corolla.app.tracking]\n{table}\n")
    return app


@pytest.mark.e2e
def test_a_simulation_logs_to_the_mlflow_store_of_the_environment(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    # MLflow's file store (opened on request only): its default SQLite store takes MLflow
    # seconds of schema migrations to create, too slow for the suite.
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    result = _run(
        tmp_path, str(APP), *SMALL, "--output", "out", "--track", "mlflow",
        env={"MLFLOW_TRACKING_URI": uri},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "tracked: MLflow run" in result.stdout and uri in result.stdout
    client, run = mlflow_run(uri, "quickstart-numpy")
    assert run.info.run_name == "out" and run.info.status == "FINISHED"
    config = json.loads((tmp_path / "out" / "run.json").read_text())["run_config"]
    assert run.data.params == {key: str(value) for key, value in config.items()}
    assert run.data.tags["corolla.nodes"] == "4"
    assert_close_series(mlflow_metrics(client, run), history_metrics(tmp_path / "out"))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"final.npz", "history.json", "run.json", "report.html"} <= artifacts
    logged = client.download_artifacts(run.info.run_id, "final.npz", str(tmp_path))
    with np.load(logged) as got, np.load(tmp_path / "out" / "final.npz") as written:
        assert got.files == written.files
        for name in written.files:
            np.testing.assert_array_equal(got[name], written[name])


@pytest.mark.e2e
def test_a_simulation_logs_to_tensorboard_as_its_pyproject_says(tmp_path):
    pytest.importorskip("tensorboard")
    app = _tracked_app(tmp_path, 'backend = "tensorboard"\nuri = "tb"')

    result = _run(tmp_path, str(app), *SMALL, "--output", "out", "--quiet")

    assert result.returncode == 0, result.stderr
    run = tensorboard_run(tmp_path / "tb" / "out")
    assert_close_series(tensorboard_scalars(run), history_metrics(tmp_path / "out"))
    assert "| num-server-rounds | 2 |" in tensorboard_text(run, "run_config")
    assert tensorboard_text(run, "status") == "finished"
    with np.load(tmp_path / "out" / "final.npz") as written:
        assert {f"final/{name}" for name in written.files} <= set(run.Tags()["tensors"])
    assert "tracking" in json.loads((tmp_path / "out" / "run.json").read_text())


@pytest.mark.parametrize(
    ("table", "options", "message"),
    [
        ("", ["--track-uri", "tb"], "--track-uri says where a tracker writes: give --track"),
        ('backend = "wandb"', [], "backend in [tool.corolla.app.tracking] in "),
        ("", ["--track", "tensorboard", "--track-uri", "blocked"], "cannot write TensorBoard"),
    ],
)
def test_bad_tracking_options_fail_before_the_run_starts(
    tmp_path, monkeypatch, capsys, table, options, message
):
    app = _tracked_app(tmp_path, table)
    (tmp_path / "blocked").write_text("a file where the log directory would go")
    monkeypatch.chdir(tmp_path)

    status = main(["run", str(app), *SMALL, "--output", "out", *options])

    assert status == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "out").exists()


def test_a_tracker_that_stopped_partway_is_told_even_when_quiet(tmp_path, capsys):
    tracker = open_tracker(
        TrackingSettings("tensorboard", str(tmp_path)), experiment="a", run_name="r", params={}
    )
    tracker.close("stopped")
    tracker.finish(History(), [])  # its writer is closed: logging fails

    say_tracked(Console(), tracker, quiet=True)

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "warning: tracking stopped partway (TensorBoard logs in" in " ".join(
        captured.err.split()
    )
