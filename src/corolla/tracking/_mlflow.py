"""Logging a run to MLflow: its config as params, each round's metrics with the round as
the step, its outputs (``final.npz`` and the rest) as artifacts.

Only ``mlflow-skinny`` is needed (the ``tracking`` extra), through its low-level
``MlflowClient``: no global active run, so two runs in one process stay apart. MLflow 3
refuses its file store (``./mlruns``) unless ``MLFLOW_ALLOW_FILE_STORE=true``; its
default, a SQLite database, needs SQLAlchemy and Alembic, which the extra brings.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import ConfigError, MissingExtraError

__all__ = ["MlflowBackend"]

#: What MLflow allows in a param's or metric's name; anything else becomes ``_``.
_NOT_ALLOWED = re.compile(r"[^\w\-. :/]", re.ASCII)
_MAX_KEY = 250
_MAX_VALUE = 6000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}


def _key(name: str) -> str:
    key = _NOT_ALLOWED.sub("_", name).strip("/") or "_"
    return re.sub(r"/+", "/", key).replace("..", "__")[:_MAX_KEY]


def _import_client() -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise MissingExtraError("mlflow-skinny", "tracking") from exc
    return MlflowClient


class MlflowBackend:
    """An MLflow run, created in experiment ``experiment`` of the store at ``uri``
    (the experiment is created if missing).

    Raises
    ------
    MissingExtraError
        If ``mlflow-skinny`` (or, for a SQLite store, SQLAlchemy) is not installed.
    ConfigError
        If the store cannot be opened or written (a bad URI, a directory that cannot be
        written, MLflow's file store without ``MLFLOW_ALLOW_FILE_STORE``).
    """

    def __init__(self, uri: str, experiment: str, run_name: str, tags: Mapping[str, str]) -> None:
        client_type = _import_client()
        from mlflow.entities import Metric, Param

        self._metric, self._param = Metric, Param
        self.uri = uri
        try:
            self._client = client_type(tracking_uri=uri)
            found = self._client.get_experiment_by_name(experiment)
            experiment_id = (
                found.experiment_id if found else self._client.create_experiment(experiment)
            )
            run = self._client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        except ModuleNotFoundError as exc:  # a SQL store without SQLAlchemy or Alembic
            raise MissingExtraError(exc.name or "sqlalchemy", "tracking") from exc
        except Exception as exc:  # MlflowException, OSError, SQLAlchemy's errors...
            raise ConfigError(
                f"cannot log to MLflow at {uri}: {_first_line(exc)}; give another "
                "--track-uri (e.g. sqlite:///mlflow.db)"
            ) from exc
        self.run_id: str = run.info.run_id
        self.experiment_id: str = experiment_id
        self.where = f"MLflow run {self.run_id} (experiment {experiment!r}) at {uri}"

    def log_params(self, params: Mapping[str, str]) -> None:
        entries = [self._param(_key(k), v[:_MAX_VALUE]) for k, v in sorted(params.items())]
        for start in range(0, len(entries), _PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=entries[start : start + _PARAMS_PER_BATCH])

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        entries = [self._metric(_key(k), v, now, step) for k, v in metrics.items()]
        for start in range(0, len(entries), _METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=entries[start : start + _METRICS_PER_BATCH])

    def log_outputs(self, files: Sequence[Path], step: int) -> None:
        for path in files:
            self._client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self._client.set_terminated(self.run_id, _STATUS.get(status, "FAILED"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
