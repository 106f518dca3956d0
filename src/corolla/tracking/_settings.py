"""Which experiment tracker a run logs to, and where: from the app's
``[tool.corolla.app.tracking]`` table, overridden by ``corolla run --track``/``--track-uri``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from ..core import ConfigError, UserConfigValue

__all__ = ["BACKENDS", "TrackingSettings"]

#: The trackers a run can log to.
BACKENDS = ("mlflow", "tensorboard")
#: What ``--track`` takes besides :data:`BACKENDS`: no tracking, whatever the app says.
NONE = "none"
_KEYS = ("backend", "uri", "experiment")

#: MLflow's own default store (MLflow 3): a SQLite database in the current directory.
DEFAULT_MLFLOW_DB = "mlflow.db"
#: Where TensorBoard logs go by default, as PyTorch's ``SummaryWriter`` puts them.
DEFAULT_LOGDIR = "runs"


def _text(table: Mapping[str, UserConfigValue], key: str, source: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: {key} must be a non-empty string, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class TrackingSettings:
    """An experiment tracker and where it writes.

    ``backend`` is ``"mlflow"`` or ``"tensorboard"``. ``uri`` is MLflow's tracking URI
    (default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the current
    directory, as MLflow itself) or TensorBoard's log directory (default ``runs``, each
    run in a subdirectory of its own). ``experiment`` names the MLflow experiment
    (default: the app's name).
    """

    backend: str
    uri: str | None = None
    experiment: str | None = None

    @classmethod
    def resolve(
        cls,
        table: Mapping[str, UserConfigValue],
        *,
        backend: str | None = None,
        uri: str | None = None,
        source: str = "[tool.corolla.app.tracking]",
    ) -> TrackingSettings | None:
        """The settings of ``table`` (the app's), ``backend`` and ``uri`` (the command
        line's) taking precedence; None when nothing is to be tracked (no backend, or
        ``backend="none"``). A ``uri`` given with a backend other than the table's
        replaces the table's.

        Raises
        ------
        ConfigError
            If the table holds an unknown key, a value that is not a string, an unknown
            backend, or ``uri`` comes without a backend.
        """
        unknown = sorted(set(table) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{source} has no setting {unknown[0]!r}: use {', '.join(_KEYS)}")
        chosen = backend or _text(table, "backend", source)
        if chosen is None:
            if uri is not None:
                raise ConfigError(
                    "--track-uri says where a tracker writes: give --track mlflow|tensorboard "
                    f"too, or set backend in {source}"
                )
            return None
        if chosen == NONE:
            return None
        if chosen not in BACKENDS:
            where = "--track" if backend else f"backend in {source}"
            raise ConfigError(
                f"{where} is {chosen!r}: use {' or '.join(repr(b) for b in BACKENDS)}"
            )
        same = chosen == _text(table, "backend", source)
        return cls(
            backend=chosen,
            uri=uri or (_text(table, "uri", source) if same else None),
            experiment=_text(table, "experiment", source),
        )

    def mlflow_uri(self, cwd: Path | None = None) -> str:
        """The MLflow tracking URI: ``uri``, ``$MLFLOW_TRACKING_URI``, or the SQLite
        database ``mlflow.db`` in ``cwd`` (default: the current directory)."""
        if self.uri:
            return self.uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{(cwd or Path.cwd()).resolve() / DEFAULT_MLFLOW_DB}"

    def logdir(self, cwd: Path | None = None) -> Path:
        """TensorBoard's log directory: ``uri``, or ``runs`` in ``cwd`` (default: the
        current directory)."""
        base = cwd or Path.cwd()
        return (base / (self.uri or DEFAULT_LOGDIR)).resolve()
