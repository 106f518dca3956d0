"""Structured events: what happened in a run, for progress bars, logs and dashboards."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Event", "EventSink", "discard_event"]


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing that happened: a round started, a node replied, a metric was computed.

    ``kind`` is dotted, e.g. ``"round.start"``, ``"round.end"``, ``"reply"``,
    ``"reply.error"``, ``"run.end"``.
    """

    kind: str
    run_id: int = 0
    round: int | None = None
    node_id: int | None = None
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    time: float = dataclasses.field(default_factory=time.time)


#: Something that receives events; it must be quick and must not raise.
EventSink = Callable[[Event], None]


def discard_event(event: Event) -> None:
    """An :data:`EventSink` that ignores every event."""
