"""What the dashboard's JSON endpoints answer: the state's views as plain JSON values,
and a run's history and final arrays as files to download."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from corolla.core import decode_array, describe_event
from corolla.state import (
    EventEntry,
    NodeSummary,
    Participation,
    ReplyFailure,
    RunSummary,
    StateTotals,
)

__all__ = [
    "arrays_npz",
    "event_json",
    "failure_json",
    "history_json",
    "node_json",
    "participation_json",
    "run_json",
    "totals_json",
]


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as None: JSON has no NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _clean(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _finite(v) for k, v in value.items()}


def run_json(summary: RunSummary, now: float) -> dict[str, Any]:
    """A run as the runs page lists it; ``now`` ends a running run's duration."""
    run = summary.run
    duration = None
    if run.started_at is not None:
        duration = (run.ended_at if run.ended_at is not None else now) - run.started_at
    last = summary.last_round
    return _clean(
        {
            "run_id": str(run.run_id),  # beyond JavaScript's exact integers
            "status": run.status.value,
            "app": summary.app,
            "by": summary.submitted_by,
            "created": run.created_at,
            "started": run.started_at,
            "ended": run.ended_at,
            "duration": duration,
            "rounds_done": summary.rounds_done,
            "num_rounds": summary.num_rounds,
            "error": run.error,
            "metrics": {
                phase: {k: v for k, v in dict(last.get(phase) or {}).items()}
                for phase in ("train", "evaluate", "server")
                if last.get(phase)
            },
        }
    )


def event_json(entry: EventEntry) -> dict[str, Any]:
    """An event with its sentence (as ``corolla log`` writes it)."""
    event = entry.event
    return _clean(
        {
            "seq": entry.seq,
            "kind": event.kind,
            "round": event.round,
            "node_id": None if event.node_id is None else str(event.node_id),
            "time": event.time,
            "text": describe_event(event),
        }
    )


def participation_json(participation: Participation) -> dict[str, Any]:
    """A participation map: rounds, node bands, and per cell ``[ok, failed, waiting]``."""
    return {
        "rounds": participation.rounds,
        "bands": [
            {"first": str(b.first_node), "last": str(b.last_node), "nodes": b.nodes}
            for b in participation.bands
        ],
        "cells": [[list(cell) for cell in line] for line in participation.cells],
    }


def failure_json(failure: ReplyFailure) -> dict[str, Any]:
    return {
        "node_id": str(failure.node_id),
        "round": failure.round,
        "type": failure.message_type,
        "code": failure.code,
        "reason": failure.reason,
    }


def node_json(summary: NodeSummary) -> dict[str, Any]:
    node = summary.node
    return {
        "node_id": str(node.node_id),
        "online": node.online,
        "last_seen": node.last_heartbeat,
        "registered": node.registered_at,
        "attributes": dict(node.attributes),
        "config": _finite(dict(node.node_config)),
        "runs_served": summary.runs_served,
        "errors": summary.errors,
    }


def totals_json(totals: StateTotals) -> dict[str, Any]:
    return {
        "last_event": totals.last_event,
        "last_run_change": totals.last_run_change,
        "nodes_online": totals.nodes_online,
        "nodes": totals.nodes,
        "runs": dict(totals.runs),
    }


def history_json(rounds: list[dict[str, Any]]) -> bytes:
    """``history.json`` of a run (``corolla run``'s format) from its ``round.end`` data."""
    return (json.dumps({"rounds": _finite(rounds)}, indent=2) + "\n").encode()


def arrays_npz(refs: list[Mapping[str, Any]], open_blob: Callable[[str], memoryview]) -> bytes:
    """The arrays a ``run.result`` event names, decoded from their blobs into one ``.npz``
    (``numpy.load`` reads it).

    Raises
    ------
    BlobNotFoundError
        If a blob is gone.
    CodecError
        If a blob is not an encoded array.
    """
    arrays = {str(ref["name"]): decode_array(open_blob(str(ref["sha256"]))) for ref in refs}
    out = io.BytesIO()
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()
