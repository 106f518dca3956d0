"""``corolla run --track mlflow|tensorboard [--track-uri URI]``: the options, and the
tracker opened from them and the app's ``[tool.corolla.app.tracking]`` before the run
starts."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from ..project import AppConfig
from ..tracking import BACKENDS, RunTracker, TrackingSettings, open_tracker

__all__ = ["add_tracking_options", "say_tracked", "start_tracking"]


def add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """``--track`` and ``--track-uri``."""
    parser.add_argument(
        "--track",
        choices=[*BACKENDS, "none"],
        help="log the run's config, metrics per round and final arrays to MLflow or "
        "TensorBoard (default: the app's [tool.corolla.app.tracking] backend; none: "
        "no tracking)",
    )
    parser.add_argument(
        "--track-uri",
        metavar="URI",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
        "in the current directory) or TensorBoard log directory (default runs)",
    )


def tracking_settings(args: argparse.Namespace, app: AppConfig | None) -> TrackingSettings | None:
    """The tracker the command line and the app (if given) ask for, or None.

    Raises
    ------
    ConfigError
        If the app's tracking table or the options are wrong.
    """
    if app is None:
        return TrackingSettings.resolve({}, backend=args.track, uri=args.track_uri)
    return TrackingSettings.resolve(
        app.tracking,
        backend=args.track,
        uri=args.track_uri,
        source=f"[tool.corolla.app.tracking] in {app.root / 'pyproject.toml'}",
    )


def start_tracking(
    args: argparse.Namespace,
    app: AppConfig | str,
    run_config: Mapping[str, Any],
    output: Path,
    tags: Mapping[str, Any],
) -> RunTracker | None:
    """Open the tracker asked for (None if none), for a run of ``app`` (its directory's
    config, or only its name) with ``run_config`` writing into ``output`` (whose name
    names the tracked run).

    Raises
    ------
    ConfigError
        If the settings are wrong, or the destination cannot be written.
    MissingExtraError
        If the tracker's package is not installed.
    """
    settings = tracking_settings(args, app if isinstance(app, AppConfig) else None)
    if settings is None:
        return None
    name = app.name if isinstance(app, AppConfig) else app
    return open_tracker(
        settings,
        experiment=name,
        run_name=output.name,
        params=run_config,
        tags={"corolla.app": name, **{f"corolla.{k}": str(v) for k, v in tags.items()}},
    )


def say_tracked(console: Console, tracker: RunTracker | None, *, quiet: bool) -> None:
    """Print where the run was tracked (unless ``quiet``), and on stderr whether the
    tracker failed on the way (always)."""
    if tracker is None:
        return
    if not quiet:
        console.print(f"tracked: {tracker.where}", markup=False, highlight=False, soft_wrap=True)
    if tracker.error is not None:
        line = Text("warning: ", style="yellow")
        line.append(f"tracking stopped partway ({tracker.where}): {tracker.error}")
        Console(stderr=True).print(line, highlight=False, soft_wrap=True)
