"""State records (runs, nodes) as their ``corolla.v1`` protobuf messages."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from corolla.core import ConfigError, CorollaError, Event
from corolla.project import AppConfig
from corolla.state import NodeInfo, RunInfo, RunStatus, StorageError
from corolla.transport import control_pb2, records_pb2, run_pb2, user_config_to_proto

from ._admission import kept_signatures, signatures_to_proto
from ._resources import LinkResources

__all__ = [
    "app_name",
    "check_config_size",
    "node_to_proto",
    "result_to_proto",
    "run_to_proto",
    "status_from_proto",
]

_STATUS = {
    RunStatus.PENDING: run_pb2.RUN_STATUS_PENDING,
    RunStatus.STARTING: run_pb2.RUN_STATUS_PENDING,
    RunStatus.RUNNING: run_pb2.RUN_STATUS_RUNNING,
    RunStatus.FINISHED: run_pb2.RUN_STATUS_FINISHED,
    RunStatus.FAILED: run_pb2.RUN_STATUS_FAILED,
    RunStatus.STOPPED: run_pb2.RUN_STATUS_STOPPED,
}

_FROM_PROTO = {
    run_pb2.RUN_STATUS_PENDING: RunStatus.PENDING,
    run_pb2.RUN_STATUS_RUNNING: RunStatus.RUNNING,
    run_pb2.RUN_STATUS_FINISHED: RunStatus.FINISHED,
    run_pb2.RUN_STATUS_FAILED: RunStatus.FAILED,
    run_pb2.RUN_STATUS_STOPPED: RunStatus.STOPPED,
}


def check_config_size(what: str, config: records_pb2.UserConfig, limit: int) -> None:
    """Refuse a config (attributes, node or run config) over ``limit`` serialized bytes.

    Raises
    ------
    ConfigError
        If it is larger.
    """
    size = config.ByteSize()
    if size > limit:
        raise ConfigError(
            f"{what} takes {size} bytes; the link accepts at most {limit} (settings belong "
            "there, data does not)"
        )


def status_from_proto(status: int) -> RunStatus:
    """The state's status for a wire status (unspecified reads as pending)."""
    for wire, ours in _FROM_PROTO.items():
        if wire == status:
            return ours
    return RunStatus.PENDING


@functools.lru_cache(maxsize=256)
def app_name(app_dir: Path) -> str:
    """The name an installed bundle's pyproject.toml declares ("" if unreadable)."""
    try:
        return AppConfig.load(app_dir).name
    except CorollaError:
        return ""


def run_to_proto(shared: LinkResources, run: RunInfo) -> run_pb2.Run:
    """A run as the wire describes it."""
    blobs = shared.blobs
    return run_pb2.Run(
        run_id=run.run_id,
        app_name=app_name(shared.apps_dir / run.bundle_hash),
        bundle_sha256=run.bundle_hash,
        bundle_size=blobs.size(run.bundle_hash) if blobs.exists(run.bundle_hash) else 0,
        run_config=user_config_to_proto(run.run_config),
        status=_STATUS[run.status],
        status_reason=run.error or "",
        created_at=run.created_at,
        started_at=run.started_at or 0.0,
        finished_at=run.ended_at or 0.0,
        bundle_signatures=signatures_to_proto(kept_signatures(shared, run.bundle_hash)),
    )


def node_to_proto(node: NodeInfo) -> control_pb2.Node:
    """A node as ``Control.ListNodes`` describes it."""
    return control_pb2.Node(
        node_id=node.node_id,
        status=control_pb2.NODE_STATUS_ONLINE if node.online else control_pb2.NODE_STATUS_OFFLINE,
        attributes=user_config_to_proto(dict(node.attributes)),
        node_config=user_config_to_proto(node.node_config),
        registered_at=node.registered_at,
        last_heartbeat_at=node.last_heartbeat,
    )


def result_to_proto(event: Event) -> control_pb2.GetRunResultResponse:
    """A run's result as ``Control.GetRunResult`` answers it, from the ``run.result`` event
    its ServerApp's grid stored (``GrpcGrid.report_result``).

    Raises
    ------
    StorageError
        If the event does not hold a result (what wrote it was not a grid).
    """
    refs = event.data.get("arrays") or []
    history = event.data.get("history")
    try:
        arrays = [
            control_pb2.ArrayReference(
                name=str(ref["name"]), sha256=str(ref["sha256"]), size=int(ref["size"])
            )
            for ref in refs
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"run {event.run_id}'s stored result is malformed: {exc}") from exc
    history_json = json.dumps(history) if isinstance(history, dict) else ""
    return control_pb2.GetRunResultResponse(found=True, arrays=arrays, history_json=history_json)
