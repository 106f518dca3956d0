"""End to end: a run on a link and two nodes, followed by ``corolla run --link --track``,
logs each round and its final arrays to MLflow and to TensorBoard."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from corolla.cli._remote import submit_and_follow
from corolla.project import AppConfig, merge_run_config
from corolla.runtime import ControlClient
from corolla.tracking import TrackingSettings, open_tracker

from ..cli.commands import source_environment
from ..tracking.readers import (
    assert_close_series,
    history_metrics,
    mlflow_metrics,
    mlflow_run,
    tensorboard_run,
    tensorboard_scalars,
    tensorboard_text,
)
from .test_e2e import APP, RUN_S, Processes, _start_link, _start_nodes, _wait_for_nodes
from .test_e2e import processes as processes  # the fixture

OVERRIDES = {"num-server-rounds": 2, "fraction-train": 1.0, "fraction-evaluate": 1.0}


@pytest.mark.e2e
def test_a_run_on_a_link_is_tracked_in_mlflow_and_tensorboard(
    processes: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    # Arrange: a link and two nodes
    fleet, control = _start_link(processes, tmp_path)
    _start_nodes(processes, fleet, tmp_path, 2)
    with ControlClient(f"127.0.0.1:{control}") as client:
        _wait_for_nodes(client, 2, processes)
    # MLflow's file store, which MLflow 3 keeps only on request (here, for the command
    # and for the client reading it back).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    env = source_environment()
    store = tmp_path / "mlruns"

    # Act: one run through the command line to MLflow, one to TensorBoard
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "corolla",
            "run",
            str(APP),
            "--link",
            f"127.0.0.1:{control}",
            "--run-config",
            *(f"{k}={v}" for k, v in OVERRIDES.items()),
            "--quiet",
            "--output",
            "mlflow-run",
            "--track",
            "mlflow",
            "--track-uri",
            store.as_uri(),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_S,
        check=False,
    )
    app = AppConfig.load(APP)
    with open_tracker(
        TrackingSettings("tensorboard", str(tmp_path / "tb")),
        experiment=app.name,
        run_name="tb-run",
        params=merge_run_config(app.config, OVERRIDES),
    ) as tracker:
        submit_and_follow(
            app,
            f"127.0.0.1:{control}",
            OVERRIDES,
            tmp_path / "tb-run",
            Console(file=io.StringIO()),
            quiet=True,
            timeout=RUN_S,
            tracker=tracker,
        )

    # Assert: each tracker holds the run's metrics per round, config and final arrays
    assert cli.returncode == 0, cli.stderr
    client, run = mlflow_run(store.as_uri(), "quickstart-numpy")
    assert run.info.status == "FINISHED"
    assert run.data.params["num-server-rounds"] == "2"
    assert run.data.params["local-epochs"] == "5"  # the app's default, as the link ran it
    assert run.data.tags["corolla.link"] == f"127.0.0.1:{control}"
    expected = history_metrics(tmp_path / "mlflow-run")
    assert [step for step, _ in expected["evaluate/accuracy"]] == [1, 2]
    assert_close_series(mlflow_metrics(client, run), expected)
    logged = client.download_artifacts(run.info.run_id, "final.npz", str(tmp_path))
    with np.load(logged) as got, np.load(tmp_path / "mlflow-run" / "final.npz") as written:
        for name in written.files:
            np.testing.assert_array_equal(got[name], written[name])

    board = tensorboard_run(tmp_path / "tb" / "tb-run")
    assert_close_series(tensorboard_scalars(board), history_metrics(tmp_path / "tb-run"))
    assert tensorboard_text(board, "status") == "finished"
    with np.load(tmp_path / "tb-run" / "final.npz") as written:
        assert {f"final/{name}" for name in written.files} <= set(board.Tags()["tensors"])
