"""Experiment tracking: a run's config, per-round metrics and final arrays logged to
MLflow or TensorBoard.

:class:`TrackingSettings` says which tracker and where (the app's
``[tool.corolla.app.tracking]``, ``corolla run --track``); :func:`open_tracker` opens
it before the run starts, so that a bad setting fails first; the :class:`RunTracker` it
returns takes the run's events and logs each round as it ends, in a simulation as on a
link, and its outputs at the end. MLflow and TensorBoard are imported only here, when a
tracker is opened (the ``tracking`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._settings import BACKENDS, TrackingSettings
from ._tracker import RunTracker, TrackingBackend, round_metrics

__all__ = [
    "BACKENDS",
    "RunTracker",
    "TrackingBackend",
    "TrackingSettings",
    "open_tracker",
    "round_metrics",
]


def open_tracker(
    settings: TrackingSettings,
    *,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> RunTracker:
    """Start logging a run named ``run_name`` with its config ``params``: an MLflow run
    in ``settings.experiment`` (default ``experiment``) with ``tags``, or a TensorBoard
    run directory ``run_name`` under the log directory. Defaults are relative to ``cwd``
    (default: the current directory).

    Raises
    ------
    MissingExtraError
        If the backend's package is not installed (the ``tracking`` extra).
    ConfigError
        If the destination cannot be opened or written.
    """
    backend: TrackingBackend
    if settings.backend == "mlflow":
        from ._mlflow import MlflowBackend

        backend = MlflowBackend(
            settings.mlflow_uri(cwd), settings.experiment or experiment, run_name, tags or {}
        )
    else:
        from ._tensorboard import TensorBoardBackend

        backend = TensorBoardBackend(settings.logdir(cwd), run_name)
    return RunTracker(backend, params)
