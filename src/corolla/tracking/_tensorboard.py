"""Logging a run to TensorBoard event files: its config as a text table (and TensorBoard's
hyperparameters), each round's metrics as scalars with the round as the step, the final
arrays as histograms.

Only the ``tensorboard`` package is needed (the ``tracking`` extra): its event file
writer and summary protos, no TensorFlow or PyTorch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core import ConfigError, MissingExtraError

__all__ = ["TensorBoardBackend", "run_directory"]

#: The text summary holding the run's config.
CONFIG_TAG = "run_config"


def run_directory(logdir: Path, name: str) -> Path:
    """``logdir/name``, or ``logdir/name-2``, ``-3``... if taken: TensorBoard merges the
    event files of one directory into one run."""
    candidate = logdir / name
    number = 1
    while candidate.exists():
        number += 1
        candidate = logdir / f"{name}-{number}"
    return candidate


def _markdown_table(params: Mapping[str, str]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = [f"| {cell(k)} | {cell(v)} |" for k, v in sorted(params.items())]
    return "\n".join(["| key | value |", "| --- | --- |", *rows])


class TensorBoardBackend:
    """Event files in a new subdirectory ``name`` of ``logdir`` (see :func:`run_directory`).

    Raises
    ------
    MissingExtraError
        If ``tensorboard`` is not installed.
    ConfigError
        If the directory cannot be created or written.
    """

    def __init__(self, logdir: Path, name: str) -> None:
        try:
            from tensorboard.compat.proto import event_pb2
            from tensorboard.plugins.histogram.summary_v2 import histogram_pb
            from tensorboard.plugins.hparams.summary_v2 import hparams_pb
            from tensorboard.plugins.scalar.summary_v2 import scalar_pb
            from tensorboard.plugins.text.summary_v2 import text_pb
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as exc:
            raise MissingExtraError("tensorboard", "tracking") from exc
        self._event, self._scalar, self._text = event_pb2.Event, scalar_pb, text_pb
        self._histogram, self._hparams = histogram_pb, hparams_pb
        self.directory = run_directory(logdir, name)
        try:
            self.directory.mkdir(parents=True)
            self._writer = EventFileWriter(str(self.directory))
            self._writer.flush()  # the event file is written now: a bad directory fails here
        except OSError as exc:
            raise ConfigError(
                f"cannot write TensorBoard logs to {self.directory}: {exc.strerror or exc}; "
                "give another --track-uri"
            ) from exc
        self.where = f"TensorBoard logs in {self.directory}"

    def _add(self, step: int, summary: Any) -> None:
        self._writer.add_event(self._event(wall_time=time.time(), step=step, summary=summary))

    def log_params(self, params: Mapping[str, str]) -> None:
        self._add(0, self._text(CONFIG_TAG, _markdown_table(params)))
        self._add(0, self._hparams(dict(params)))
        self._writer.flush()

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for tag, value in metrics.items():
            self._add(step, self._scalar(tag, value))
        self._writer.flush()  # TensorBoard shows each round as it ends

    def log_outputs(self, files: Sequence[Path], step: int) -> None:
        for path in files:
            if path.name != "final.npz":
                continue
            with np.load(path) as arrays:
                for name in arrays.files:
                    array = arrays[name]
                    if array.dtype.kind not in "biuf":
                        continue  # a histogram is of numbers
                    values = np.asarray(array, dtype=np.float64).ravel()
                    if values.size and np.isfinite(values).all():
                        self._add(step, self._histogram(f"final/{name}", values))
        self._writer.flush()

    def close(self, status: str) -> None:
        self._add(0, self._text("status", status))
        self._writer.close()
