"""An MLflow destination that cannot be used is refused before the run, with MLflow's
reason (the runs that log to MLflow are in tests/cli/test_tracking.py and
tests/runtime/test_tracking.py)."""

from __future__ import annotations

import pytest

from corolla.core import ConfigError
from corolla.tracking import TrackingSettings, open_tracker

pytest.importorskip("mlflow")


def test_a_file_store_is_refused_with_mlflows_reason(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)

    with pytest.raises(ConfigError, match=r"cannot log to MLflow at .*mlruns: .*file"):
        open_tracker(
            TrackingSettings("mlflow", str(tmp_path / "mlruns")),
            experiment="app",
            run_name="r",
            params={},
        )
