"""Run events <-> ``corolla.v1.RunEvent``: kind, round, node and JSON data."""

from __future__ import annotations

import json

from corolla.core import CodecError, Event

from ._proto import run_pb2

__all__ = ["event_from_proto", "event_to_proto"]


def event_to_proto(event: Event, sequence: int) -> run_pb2.RunEvent:
    """Convert a run event, at position ``sequence`` of its run's log, to protobuf.

    Values of ``event.data`` that JSON cannot hold are written as their ``str``.
    """
    proto = run_pb2.RunEvent(
        sequence=sequence,
        run_id=event.run_id,
        kind=event.kind,
        time=event.time,
        data_json=json.dumps(dict(event.data), default=str, separators=(",", ":")),
    )
    if event.round is not None:
        proto.round = event.round
    if event.node_id is not None:
        proto.node_id = event.node_id
    return proto


def event_from_proto(proto: run_pb2.RunEvent) -> tuple[int, Event]:
    """Rebuild ``(sequence, event)`` from protobuf.

    Raises
    ------
    CodecError
        If ``data_json`` is not a JSON object.
    """
    try:
        data = json.loads(proto.data_json) if proto.data_json else {}
    except ValueError as exc:
        raise CodecError(f"event {proto.sequence} has malformed data: {exc}") from exc
    if not isinstance(data, dict):
        raise CodecError(f"event {proto.sequence} data is not a JSON object")
    event = Event(
        kind=proto.kind,
        run_id=proto.run_id,
        round=proto.round if proto.HasField("round") else None,
        node_id=proto.node_id if proto.HasField("node_id") else None,
        data=data,
        time=proto.time,
    )
    return proto.sequence, event
