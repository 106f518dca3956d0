"""History: the metrics of a run, round by round."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core import ConfigError, MetricRecord

__all__ = ["History", "RoundSummary"]

#: The phases of a round whose metrics a :class:`History` keeps.
PHASES = ("train", "evaluate", "server")


def _check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise ConfigError(f"unknown phase {phase!r}; use one of {PHASES}")
    return phase


@dataclasses.dataclass
class RoundSummary:
    """What happened in one round: metrics from training, evaluation and the server."""

    round: int
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    evaluate: dict[str, Any] = dataclasses.field(default_factory=dict)
    server: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_replies: int = 0
    train_failures: int = 0
    evaluate_replies: int = 0
    evaluate_failures: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class History:
    """Per-round metrics of a run; ``to_dict()`` is the ``history.json`` format."""

    def __init__(self) -> None:
        self.rounds: list[RoundSummary] = []

    def round(self, number: int) -> RoundSummary:
        """The summary of round ``number``, created on first use."""
        for summary in self.rounds:
            if summary.round == number:
                return summary
        summary = RoundSummary(number)
        self.rounds.append(summary)
        self.rounds.sort(key=lambda s: s.round)
        return summary

    def record(self, number: int, phase: str, metrics: Mapping[str, Any] | MetricRecord) -> None:
        """Store ``metrics`` under ``phase`` (``train``, ``evaluate`` or ``server``).

        Raises
        ------
        ConfigError
            If ``phase`` is not one of those.
        """
        target: dict[str, Any] = getattr(self.round(number), _check_phase(phase))
        target.update(dict(metrics))

    def series(self, phase: str, name: str) -> list[tuple[int, Any]]:
        """``(round, value)`` pairs of one metric, e.g. ``series("server", "accuracy")``.

        Raises
        ------
        ConfigError
            If ``phase`` is not ``train``, ``evaluate`` or ``server``.
        """
        _check_phase(phase)
        out = []
        for summary in self.rounds:
            values: dict[str, Any] = getattr(summary, phase)
            if name in values:
                out.append((summary.round, values[name]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": [s.to_dict() for s in self.rounds]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        history = cls()
        fields = {f.name for f in dataclasses.fields(RoundSummary)}
        for item in data.get("rounds", []):
            # Copy the metric dicts: the history must not share them with ``data``.
            known: dict[str, Any] = {
                k: dict(v) if isinstance(v, Mapping) else v for k, v in item.items()
            }
            history.rounds.append(RoundSummary(**{k: v for k, v in known.items() if k in fields}))
        history.rounds.sort(key=lambda s: s.round)
        return history

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def __repr__(self) -> str:
        return f"History({len(self.rounds)} rounds)"
