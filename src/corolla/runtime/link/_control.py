"""The Control service (submit, list, show, stop runs; follow their events; list nodes)
and RunArtifacts (download what a run produced), served on the link's control address."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from corolla.core import ConfigError, ErrorCode, Event, MessageError, PermissionDeniedError
from corolla.project import AppConfig, merge_run_config
from corolla.state import RunInfo, RunStatus, RunStatusError
from corolla.transport import (
    ChunkAssembler,
    control_pb2,
    control_pb2_grpc,
    event_to_proto,
    fleet_pb2,
    run_pb2,
    serverappio_pb2_grpc,
    user_config_from_proto,
)
from corolla.trust import check_bundle_hash

from .._audit import audit, reason_summary
from .._bundle import BundleLimits, install_bundle
from ._access import caller_name
from ._admission import admit_app, checked_signatures, keep_signatures, kept_signatures
from ._handlers import servicer_errors, stream_errors
from ._names import USER_NAMER
from ._payloads import serve_payload
from ._records import check_config_size, node_to_proto, result_to_proto, run_to_proto
from ._resources import LinkResources
from ._runs import RunProcesses
from ._wakeups import events_key

__all__ = ["ControlServicer", "RunArtifactsServicer", "stop_run"]

_LIVENESS_S = 1.0


class ControlServicer(control_pb2_grpc.ControlServicer):
    """What people and tools call on the link."""

    def __init__(self, shared: LinkResources, runs: RunProcesses) -> None:
        self._shared = shared
        self._runs = runs

    def redact(self, text: str) -> str:
        return self._shared.redact(text)

    def SubmitRun(
        self,
        request_iterator: Iterator[control_pb2.SubmitRunRequest],
        context: grpc.ServicerContext,
    ) -> control_pb2.SubmitRunResponse:
        return self._submit(request_iterator, context)

    @servicer_errors
    def _submit(
        self,
        request_iterator: Iterator[control_pb2.SubmitRunRequest],
        context: grpc.ServicerContext,
    ) -> control_pb2.SubmitRunResponse:
        shared = self._shared
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "spec":
            raise MessageError("SubmitRun must start with a RunSpec")
        spec = first.spec
        check_config_size("the run config", spec.run_config, shared.limits.max_config_bytes)
        if spec.bundle_size > BundleLimits().max_bytes:
            raise ConfigError(
                f"the app bundle has {spec.bundle_size} bytes; the link accepts at most "
                f"{BundleLimits().max_bytes}"
            )
        # Before a byte of the bundle is stored: the hash the chunks must match is signed.
        check_bundle_hash(spec.bundle_sha256)
        caller = _actor(context)
        signatures = checked_signatures(shared, spec.bundle_sha256, spec.bundle_signatures, caller)
        # A signature speaks for the bundle, whoever submits it: those kept from earlier
        # runs count too, as they do on the nodes, which get them all.
        kept = kept_signatures(shared, spec.bundle_sha256)
        admit_app(shared, spec.bundle_sha256, [*signatures, *kept], caller)
        # The bundle may be stored already: keep it from being collected meanwhile.
        shared.names.mark_named([spec.bundle_sha256], USER_NAMER)
        assembler: ChunkAssembler | None = None
        for request in request_iterator:
            if request.WhichOneof("part") != "bundle_chunk":
                raise MessageError("SubmitRun carries one RunSpec, then bundle chunks")
            if assembler is None:
                assembler = ChunkAssembler(spec.bundle_sha256, spec.bundle_size)
            assembler.add_chunk(request.bundle_chunk)
        if assembler is not None:
            shared.blobs.put_stream(
                (assembler.finish(),), expected_hash=spec.bundle_sha256, verified=True
            )
        elif not shared.blobs.exists(spec.bundle_sha256):
            raise _MissingBundleError(
                f"the link holds no bundle {spec.bundle_sha256[:12]}; send it"
            )
        app_dir = install_bundle(
            shared.blobs.open(spec.bundle_sha256), shared.apps_dir / spec.bundle_sha256
        )
        keep_signatures(shared, spec.bundle_sha256, signatures)
        app = AppConfig.load(app_dir)
        config = merge_run_config(app.config, user_config_from_proto(spec.run_config))
        run = shared.state.create_run(spec.bundle_sha256, config)
        shared.state.append_event(
            Event(
                "run.submit",
                run.run_id,
                data={"app": app.name, "bundle": spec.bundle_sha256, "by": caller},
            )
        )
        audit(
            shared.audit,
            "run.submit",
            {"run_id": run.run_id, "app": app.name, "bundle": spec.bundle_sha256},
            actor=caller,
        )
        self._runs.launch(run)
        return control_pb2.SubmitRunResponse(
            run=run_to_proto(shared, shared.state.get_run(run.run_id))
        )

    @servicer_errors
    def ListRuns(
        self, request: control_pb2.ListRunsRequest, context: grpc.ServicerContext
    ) -> control_pb2.ListRunsResponse:
        runs = reversed(self._shared.state.list_runs())
        return control_pb2.ListRunsResponse(runs=[run_to_proto(self._shared, r) for r in runs])

    @servicer_errors
    def GetRun(
        self, request: run_pb2.GetRunRequest, context: grpc.ServicerContext
    ) -> run_pb2.GetRunResponse:
        run = self._shared.state.get_run(request.run_id)
        return run_pb2.GetRunResponse(run=run_to_proto(self._shared, run))

    @servicer_errors
    def StopRun(
        self, request: control_pb2.StopRunRequest, context: grpc.ServicerContext
    ) -> control_pb2.StopRunResponse:
        run = stop_run(self._shared, self._runs, request.run_id, request.reason, _actor(context))
        return control_pb2.StopRunResponse(run=run_to_proto(self._shared, run))

    @stream_errors
    def StreamEvents(
        self, request: control_pb2.StreamEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[run_pb2.RunEvent]:
        shared = self._shared
        run_id = request.run_id
        shared.state.get_run(run_id)  # raises for an unknown run
        after = request.after_sequence
        key = events_key(run_id)
        while context.is_active() and not shared.signals.closed:
            seen = shared.signals.generation(key)
            ended = shared.state.get_run(run_id).status.ended and not self._runs.is_active(run_id)
            entries = shared.state.read_events(run_id, after=after)
            for entry in entries:
                after = entry.seq
                yield event_to_proto(entry.event, entry.seq)
                if entry.event.kind == "run.end" and request.follow:
                    return
            if not request.follow or (ended and not entries):
                return
            shared.signals.wait(key, seen, _LIVENESS_S)

    @servicer_errors
    def ListNodes(
        self, request: control_pb2.ListNodesRequest, context: grpc.ServicerContext
    ) -> control_pb2.ListNodesResponse:
        nodes = self._shared.state.list_nodes()
        return control_pb2.ListNodesResponse(nodes=[node_to_proto(n) for n in nodes])

    @servicer_errors
    def GetRunResult(
        self, request: control_pb2.GetRunResultRequest, context: grpc.ServicerContext
    ) -> control_pb2.GetRunResultResponse:
        state = self._shared.state
        state.get_run(request.run_id)  # raises for an unknown run
        reported = state.read_events(request.run_id, kind="run.result")
        if not reported:
            return control_pb2.GetRunResultResponse(found=False)
        return result_to_proto(reported[-1].event)


def stop_run(
    shared: LinkResources, runs: RunProcesses, run_id: int, reason: str, actor: str
) -> RunInfo:
    """Stop run ``run_id`` for ``actor`` (an account, or who called): its status, its
    ServerApp, and the messages its nodes are running; returns the run. Stopping a run
    that already ended changes nothing.

    Raises
    ------
    UnknownRunError
        If there is no such run.
    """
    state = shared.state
    try:
        state.update_run_status(run_id, RunStatus.STOPPED, error=reason or "stopped by a user")
    except RunStatusError:
        if not state.get_run(run_id).status.ended:
            raise
    stopped = {"run_id": run_id, "reason": reason_summary(reason)}
    audit(shared.audit, "run.stop", stopped, actor=actor)
    runs.stop(run_id)
    # The nodes running its messages stop them now, not when their ClientApp returns.
    shared.run_ends.ended(run_id, f"stopped: {reason}" if reason else "stopped by a user")
    shared.signals.notify([events_key(run_id)])
    return state.get_run(run_id)


def _actor(context: grpc.ServicerContext) -> str:
    """Who makes a Control call, for the audit log: the account, or on a link without
    accounts ``anonymous`` and where the call came from."""
    name = caller_name(context)
    return f"{name} ({context.peer()})" if name == "anonymous" else name


class RunArtifactsServicer(serverappio_pb2_grpc.RunArtifactsServicer):
    """Serves the arrays of runs' results (``GetRunResult`` names them) to Control
    clients, and no other stored payload: the model updates of nodes and the runs'
    checkpoints stay in the link."""

    def __init__(self, shared: LinkResources) -> None:
        self._shared = shared
        self._lock = threading.Lock()
        self._results: set[str] = set()
        self._runs_read: set[int] = set()  # ended runs whose results are in _results

    def redact(self, text: str) -> str:
        return self._shared.redact(text)

    def _check_result_array(self, sha256: str) -> None:
        with self._lock:
            if sha256 in self._results:
                return
        state = self._shared.state
        for run in state.list_runs():
            if run.run_id in self._runs_read:
                continue
            for entry in state.read_events(run.run_id, kind="run.result"):
                refs = entry.event.data.get("arrays") or []
                with self._lock:
                    self._results.update(str(r.get("sha256")) for r in refs if isinstance(r, dict))
            if run.status.ended:
                with self._lock:
                    self._runs_read.add(run.run_id)
        with self._lock:
            if sha256 in self._results:
                return
        raise PermissionDeniedError(
            f"no run's result names array {sha256[:12]}: the link hands out only the arrays "
            "of runs' results (see `corolla pull`)"
        )

    @stream_errors
    def PullArrays(  # type: ignore[override]  # serialized chunks (see _handlers)
        self, request: fleet_pb2.PullArraysRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        self._check_result_array(request.sha256)
        yield from serve_payload(self._shared.blobs, request.sha256, request.offset)


class _MissingBundleError(ConfigError):
    """A run was submitted without its bundle, which the link does not hold."""

    code = ErrorCode.CONFLICT
