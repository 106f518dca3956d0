"""End to end: runs on a link and two nodes, followed by ``corolla run --link --track``
and ``corolla attach --track``, log each round, their config and their final arrays to
MLflow and to TensorBoard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corolla.runtime import ControlClient

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


def _corolla(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corolla", *args, "--quiet"],
        cwd=cwd,
        env=source_environment(),
        capture_output=True,
        text=True,
        timeout=RUN_S,
        check=False,
    )


@pytest.mark.e2e
def test_runs_on_a_link_are_tracked_in_mlflow_and_tensorboard(
    processes: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    # Arrange: a link and two nodes, and MLflow's file store, which MLflow 3 opens only
    # on request (here, for the command and for the client reading it back)
    fleet, control = _start_link(processes, tmp_path)
    _start_nodes(processes, fleet, tmp_path, 2)
    link = f"127.0.0.1:{control}"
    with ControlClient(link) as client:
        _wait_for_nodes(client, 2, processes)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = (tmp_path / "mlruns").as_uri()
    overrides = [f"{k}={v}" for k, v in OVERRIDES.items()]

    # Act: one run submitted and followed to MLflow, one submitted before and followed
    # again (from its start) to TensorBoard
    run = _corolla(
        tmp_path, "run", str(APP), "--link", link, "--run-config", *overrides,
        "--output", "mlflow-run", "--track", "mlflow", "--track-uri", store,
    )  # fmt: skip
    with ControlClient(link) as client:
        run_id = client.submit(APP, {**OVERRIDES, "seed": 0}).run_id
    attach = _corolla(
        tmp_path, "attach", str(run_id), "--link", link, "--output", "tb-run",
        "--track", "tensorboard", "--track-uri", "tb",
    )  # fmt: skip

    # Assert: each tracker holds the run's config, metrics per round and final arrays
    assert run.returncode == 0, run.stderr
    assert attach.returncode == 0, attach.stderr
    client, logged = mlflow_run(store, "quickstart-numpy")
    assert logged.info.status == "FINISHED"
    assert logged.data.params["num-server-rounds"] == "2"
    assert logged.data.params["local-epochs"] == "5"  # the app's default, as the link ran it
    assert logged.data.tags["corolla.link"] == link
    expected = history_metrics(tmp_path / "mlflow-run")
    assert [step for step, _ in expected["evaluate/accuracy"]] == [1, 2]
    assert_close_series(mlflow_metrics(client, logged), expected)
    final = client.download_artifacts(logged.info.run_id, "final.npz", str(tmp_path))
    with np.load(final) as got, np.load(tmp_path / "mlflow-run" / "final.npz") as written:
        assert got.files == written.files
        for name in written.files:
            np.testing.assert_array_equal(got[name], written[name])

    board = tensorboard_run(tmp_path / "tb" / "tb-run")
    assert_close_series(tensorboard_scalars(board), history_metrics(tmp_path / "tb-run"))
    assert "| local-epochs | 5 |" in tensorboard_text(board, "run_config")
    assert tensorboard_text(board, "status") == "finished"
    with np.load(tmp_path / "tb-run" / "final.npz") as written:
        assert {f"final/{name}" for name in written.files} <= set(board.Tags()["tensors"])
