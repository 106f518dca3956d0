"""What a run leaves, as one typed value: its final arrays and its history."""

from __future__ import annotations

import dataclasses

from ..core import ArrayRecord
from ._history import History

__all__ = ["RunResult"]


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A run's final arrays and history, as its ServerApp reported them
    (:meth:`~corolla.server.Grid.report_result`; ``Strategy.start`` does); either is None
    where it reported none."""

    arrays: ArrayRecord | None = None
    history: History | None = None
