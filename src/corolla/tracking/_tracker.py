"""A run's tracker: what a run logs (its config, each round's metrics as the round ends,
its outputs at the end) whatever the backend it logs to."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from ..core import Event
from ..server import History, RoundSummary

__all__ = ["RunTracker", "TrackingBackend", "round_metrics"]

_log = logging.getLogger(__name__)

#: The phases of a round whose metrics are logged, as :class:`History` keeps them.
PHASES = ("train", "evaluate", "server")


def round_metrics(summary: RoundSummary) -> dict[str, float]:
    """Every numeric metric of a round, named ``phase/metric`` (``train/loss``,
    ``evaluate/accuracy``, ``server/accuracy``): ints and floats, NaN and infinities
    included; booleans and lists left out."""
    metrics: dict[str, float] = {}
    for phase in PHASES:
        values: dict[str, Any] = getattr(summary, phase)
        for name, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[f"{phase}/{name}"] = float(value)
    return metrics


class TrackingBackend(Protocol):
    """Where a :class:`RunTracker` writes: an MLflow run, a TensorBoard log directory."""

    #: Where the run is logged, in words (``MLflow run 3f2a... at sqlite:///...``).
    where: str

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log the run's config, once, before its first round."""

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log the metrics of round ``step``."""

    def log_outputs(self, files: Sequence[Path], step: int) -> None:
        """Log what the run left (``final.npz``, ``history.json``...) after round ``step``."""

    def close(self, status: str) -> None:
        """End the run: ``finished``, ``failed`` or ``stopped`` (the command stopped
        following it)."""


def _summary(data: Mapping[str, Any]) -> RoundSummary | None:
    rounds = History.from_dict({"rounds": [dict(data)]}).rounds
    return rounds[0] if rounds else None


class RunTracker:
    """Logs one run to a :class:`TrackingBackend`.

    Called with each of the run's events (an ``EventSink``), it logs a round's metrics when
    the round ends; :meth:`finish` logs the rounds after the last one it has seen (whose
    events did not come) and the run's outputs. Rounds are logged in increasing order
    only: TensorBoard takes a step lower than one before as a restarted run and drops the
    later steps. Used as a context manager, a run left unfinished is
    closed as failed (an error) or stopped (Ctrl-C, or left without :meth:`finish`).

    Logging is best effort while the run goes on: a tracker that fails is not the run's
    failure. The first error is kept in :attr:`error`, and nothing more is logged.
    """

    def __init__(self, backend: TrackingBackend, params: Mapping[str, Any]) -> None:
        self._backend = backend
        self._logged: set[int] = set()
        self._closed = False
        self.error: str | None = None
        self._guard(lambda: backend.log_params({k: str(v) for k, v in params.items()}))

    @property
    def where(self) -> str:
        """Where the run is logged, in words."""
        return self._backend.where

    def _guard(self, action: Any) -> None:
        if self.error is not None:
            return
        try:
            action()
        except Exception as exc:  # a tracker's failure must not fail the run
            self.error = f"{type(exc).__name__}: {exc}"
            _log.warning("tracking stopped (%s): %s", self.where, self.error)

    def __call__(self, event: Event) -> None:
        if event.kind == "round.end":
            summary = _summary(event.data)
            if summary is not None:
                self.log_round(summary)

    def log_round(self, summary: RoundSummary) -> None:
        """Log the metrics of ``summary``'s round, unless it or a later one was logged."""
        if self._logged and summary.round <= max(self._logged):
            return
        self._logged.add(summary.round)
        metrics = round_metrics(summary)
        if metrics:
            self._guard(lambda: self._backend.log_metrics(summary.round, metrics))

    def finish(self, history: History, files: Sequence[Path]) -> None:
        """Log the rounds of ``history`` after the last one logged and the run's output
        ``files``, then close the run as finished."""
        for summary in history.rounds:
            self.log_round(summary)
        last = max((s.round for s in history.rounds), default=0)
        self._guard(lambda: self._backend.log_outputs(files, last))
        self.close("finished")

    def close(self, status: str) -> None:
        """End the run as ``status``; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._backend.close(status)
        except Exception as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            _log.warning("tracking could not close (%s): %s", self.where, exc)

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        failed = kind is not None and not issubclass(kind, KeyboardInterrupt)
        self.close("failed" if failed else "stopped")
