"""A run's events as sentences, for ``corolla log`` and the dashboard (``corolla log
--json`` gives them raw)."""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from ._events import Event

__all__ = ["describe_event", "event_json", "gist"]

#: The phases whose metrics a ``round.end`` event carries (as in ``History``).
_PHASES = ("train", "evaluate", "server")


def _number(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)


def _metrics(data: Mapping[str, Any]) -> str:
    parts = []
    for phase in _PHASES:
        metrics = data.get(phase)
        if not isinstance(metrics, Mapping):
            continue
        for name, value in metrics.items():
            if name != "num-examples" and isinstance(value, int | float):
                parts.append(f"{phase} {name} {_number(value)}")
    return ", ".join(parts)


def gist(text: Any) -> str:
    """One line of a reason: a traceback's last line (the error), a heading ending in
    ':' with the last line after it, or else the first line."""
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].startswith("Traceback"):
        return lines[-1]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[-1]}"
    return lines[0]


def _progress(event: Event) -> str:
    data = event.data
    where = f"round {event.round} " if event.round is not None else ""
    return (
        f"{where}{data.get('phase') or 'nodes'}: "
        f"{data.get('done', '?')} of {data.get('total', '?')} replies"
    )


def _round_end(event: Event) -> str:
    data = event.data
    text = f"round {event.round} ended"
    metrics = _metrics(data)
    if metrics:
        text += f": {metrics}"
    replies, failures = data.get("train_replies", 0), data.get("train_failures", 0)
    if replies or failures:
        text += f" ({replies} nodes trained, {failures} failed)"
    return text


def _run_end(event: Event) -> str:
    status = str(event.data.get("status", "ended"))
    reason = gist(event.data.get("reason"))
    return f"run {status}" + (f": {reason}" if reason and status != "finished" else "")


def _reply_error(event: Event) -> str:
    data = event.data
    return (
        f"round {event.round}: node {event.node_id} answered {data.get('phase', 'a message')} "
        f"with an error: {gist(data.get('reason')) or 'no reason given'}"
    )


def _privacy(event: Event) -> str:
    data = event.data
    text = (
        f"round {event.round}: privacy spent epsilon {float(data.get('epsilon', 0)):.4g} "
        f"at delta {float(data.get('delta', 0)):.3g}"
    )
    budget = data.get("epsilon_budget")
    return text + (f" (budget {float(budget):g})" if budget is not None else "")


def _collected(event: Event) -> str:
    data = event.data
    megabytes = float(data.get("bytes", 0)) / 1e6
    blobs = data.get("blobs", 0)
    return f"the link deleted what only this run used: {blobs} blobs, {megabytes:.1f} MB"


_SENTENCES: dict[str, Callable[[Event], str]] = {
    "run.submit": lambda e: f"run submitted: app {e.data.get('app', '?')}",
    "run.start": lambda e: (
        "ServerApp started again after the link restarted"
        if e.data.get("resumed")
        else "ServerApp started"
    ),
    "run.app": lambda e: f"app {e.data.get('app', '?')} loaded",
    "log": lambda e: f"| {e.data.get('line', '')}",
    "nodes.waiting": lambda e: (
        f"waiting for nodes: {e.data.get('connected', 0)} of {e.data.get('needed', '?')} connected"
    ),
    "nodes.ready": lambda e: (
        f"{e.data.get('nodes', '?')} nodes connected after {float(e.data.get('waited_s', 0)):.0f} s"
    ),
    "round.start": lambda e: f"round {e.round} of {e.data.get('num_rounds', '?')} started",
    "progress": _progress,
    "round.end": _round_end,
    "reply.error": _reply_error,
    "reply.missing": lambda e: (
        f"round {e.round}: node {e.node_id} did not reply to {e.data.get('phase', 'a message')}"
    ),
    "reply.rejected": lambda e: (
        f"the link refused a reply of node {e.node_id}: {gist(e.data.get('reason'))}"
    ),
    "privacy": _privacy,
    "run.stop": lambda e: f"run stopped before round {e.round}: {gist(e.data.get('reason'))}",
    "checkpoint": lambda e: f"round {e.round} checkpoint stored",
    "run.resume": lambda e: f"resumed from the checkpoint of round {e.round}",
    "run.result": lambda e: f"final arrays stored ({len(e.data.get('arrays') or [])} arrays)",
    "run.error": lambda e: (
        f"the ServerApp failed: {e.data.get('error', 'error')}: {gist(e.data.get('reason'))}"
    ),
    "run.end": _run_end,
    "run.collected": _collected,
}


def describe_event(event: Event) -> str:
    """One line for ``event``: its time, then a sentence (the kind and its data as JSON for
    a kind this version does not know)."""
    stamp = datetime.datetime.fromtimestamp(event.time).strftime("%H:%M:%S")
    sentence = _SENTENCES.get(event.kind)
    if sentence is not None:
        return f"{stamp} {sentence(event)}"
    where = "" if event.round is None else f" round {event.round}"
    where += "" if event.node_id is None else f" node {event.node_id}"
    detail = json.dumps(dict(event.data), default=str) if event.data else ""
    return f"{stamp} {event.kind}{where} {detail}".rstrip()


def event_json(sequence: int, event: Event) -> str:
    """``event`` as one line of JSON, with stable keys."""
    return json.dumps(
        {
            "sequence": sequence,
            "run_id": event.run_id,
            "kind": event.kind,
            "round": event.round,
            "node_id": event.node_id,
            "time": event.time,
            "data": dict(event.data),
        },
        default=str,
    )
