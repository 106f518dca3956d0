"""Which tracker a run logs to: the app's table, the command line over it, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from corolla.core import ConfigError
from corolla.tracking import TrackingSettings


def test_nothing_asked_tracks_nothing():
    assert TrackingSettings.resolve({}) is None


def test_the_apps_table_is_read():
    settings = TrackingSettings.resolve(
        {"backend": "mlflow", "uri": "sqlite:///x.db", "experiment": "digits"}
    )

    assert settings == TrackingSettings("mlflow", "sqlite:///x.db", "digits")


def test_the_command_line_wins_over_the_table():
    table = {"backend": "mlflow", "uri": "sqlite:///x.db"}

    assert TrackingSettings.resolve(table, uri="sqlite:///y.db") == TrackingSettings(
        "mlflow", "sqlite:///y.db"
    )
    # The table's URI is MLflow's: it does not become TensorBoard's log directory.
    assert TrackingSettings.resolve(table, backend="tensorboard") == TrackingSettings("tensorboard")
    assert TrackingSettings.resolve(table, backend="none") is None


@pytest.mark.parametrize(
    ("table", "options", "message"),
    [
        ({"backend": "wandb"}, {}, r"backend in \[tool.corolla.app.tracking\] is 'wandb': use"),
        ({}, {"backend": "wandb"}, r"--track is 'wandb'"),
        ({"backnd": "mlflow"}, {}, r"has no setting 'backnd': use backend, uri, experiment"),
        ({"backend": 1}, {}, r"backend must be a non-empty string, got 1"),
        ({}, {"uri": "runs"}, r"--track-uri says where a tracker writes: give --track"),
    ],
)
def test_bad_settings_are_named(table, options, message):
    with pytest.raises(ConfigError, match=message):
        TrackingSettings.resolve(table, **options)


def test_mlflow_defaults_to_its_environment_variable_then_a_database_here(monkeypatch, tmp_path):
    settings = TrackingSettings("mlflow")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert settings.mlflow_uri(tmp_path) == "sqlite:///elsewhere.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert settings.mlflow_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_tensorboard_defaults_to_runs_here(tmp_path: Path):
    assert TrackingSettings("tensorboard").logdir(tmp_path) == tmp_path.resolve() / "runs"
    assert TrackingSettings("tensorboard", "tb").logdir(tmp_path) == tmp_path.resolve() / "tb"
