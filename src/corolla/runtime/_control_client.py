"""A client of the link's Control API: submit a run, follow its events, fetch its result.

``corolla run --link``, ``corolla ls``, ``corolla log`` and tests are built on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import grpc

from corolla.core import ArrayRecord, CodecError, Event, UserConfigValue, decode_array
from corolla.server import History
from corolla.transport import (
    channel_credentials,
    channel_options,
    chunk_messages,
    control_pb2,
    control_pb2_grpc,
    event_from_proto,
    iter_rpc,
    requires_tls,
    run_pb2,
    serverappio_pb2_grpc,
    sha256_of,
    translate_rpc_errors,
    user_config_to_proto,
)

from ._bundle import make_bundle
from ._payloads import pull_payload, with_chunk_frames

__all__ = ["ControlClient", "RunResult"]


class RunResult:
    """What a finished run left: its final arrays and history, when it reported them."""

    def __init__(self, arrays: ArrayRecord | None, history: History | None) -> None:
        self.arrays = arrays
        self.history = history


class ControlClient:
    """Calls the Control API of the link at ``address``.

    Raises
    ------
    ConfigError
        If a certificate file cannot be read.
    """

    def __init__(
        self,
        address: str,
        *,
        root_certificates: str | os.PathLike[str] | None = None,
        insecure: bool = False,
    ) -> None:
        if not insecure and (root_certificates is not None or requires_tls(address)):
            credentials = channel_credentials(root_certificates)
            self._channel = grpc.secure_channel(address, credentials, options=channel_options())
        else:
            self._channel = grpc.insecure_channel(address, options=channel_options())
        self._stub = control_pb2_grpc.ControlStub(self._channel)
        artifacts = serverappio_pb2_grpc.RunArtifactsStub(self._channel)
        self._artifacts = with_chunk_frames(artifacts, self._channel, "RunArtifacts")

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def submit(
        self,
        app_dir: str | os.PathLike[str],
        run_config: Mapping[str, UserConfigValue] | None = None,
        *,
        timeout: float | None = 60.0,
    ) -> run_pb2.Run:
        """Bundle ``app_dir`` and submit it with run-config overrides; return the run.

        Raises
        ------
        CorollaError
            The link's answer (unknown config key, app that fails to load...) or a
            transport failure.
        """
        bundle = make_bundle(app_dir)
        digest = sha256_of(bundle)
        spec = control_pb2.RunSpec(
            bundle_sha256=digest,
            bundle_size=len(bundle),
            run_config=user_config_to_proto(dict(run_config or {})),
        )

        def requests() -> Iterator[control_pb2.SubmitRunRequest]:
            yield control_pb2.SubmitRunRequest(spec=spec)
            for chunk in chunk_messages(bundle, sha256=digest):
                yield control_pb2.SubmitRunRequest(bundle_chunk=chunk)

        with translate_rpc_errors():
            return self._stub.SubmitRun(requests(), timeout=timeout).run

    def get_run(self, run_id: int) -> run_pb2.Run:
        with translate_rpc_errors():
            return self._stub.GetRun(run_pb2.GetRunRequest(run_id=run_id)).run

    def list_runs(self) -> list[run_pb2.Run]:
        with translate_rpc_errors():
            return list(self._stub.ListRuns(control_pb2.ListRunsRequest()).runs)

    def stop_run(self, run_id: int, reason: str = "") -> run_pb2.Run:
        with translate_rpc_errors():
            return self._stub.StopRun(control_pb2.StopRunRequest(run_id=run_id, reason=reason)).run

    def list_nodes(self) -> list[control_pb2.Node]:
        with translate_rpc_errors():
            return list(self._stub.ListNodes(control_pb2.ListNodesRequest()).nodes)

    def events(
        self, run_id: int, *, follow: bool = True, after: int = 0, timeout: float | None = None
    ) -> Iterator[tuple[int, Event]]:
        """The run's events as ``(sequence, event)``; with ``follow``, until the run ends.

        Raises
        ------
        CorollaError
            If the run is unknown, the stream breaks, or ``timeout`` passes.
        """
        request = control_pb2.StreamEventsRequest(
            run_id=run_id, after_sequence=after, follow=follow
        )
        for proto in iter_rpc(self._stub.StreamEvents(request, timeout=timeout)):
            yield event_from_proto(proto)

    def result_of(self, event: Event) -> RunResult:
        """Download the arrays a ``run.result`` event names and rebuild its history.

        Raises
        ------
        CodecError
            If the event is malformed or a payload does not verify.
        """
        arrays = None
        refs = event.data.get("arrays")
        if isinstance(refs, list):
            items: list[tuple[str, Any]] = []
            for ref in refs:
                try:
                    view = pull_payload(self._artifacts.PullArrays, ref["sha256"], int(ref["size"]))
                except (KeyError, TypeError) as exc:
                    raise CodecError(f"malformed array reference {ref!r}") from exc
                items.append((str(ref["name"]), decode_array(view)))
            arrays = ArrayRecord(items)
        history_data = event.data.get("history")
        history = History.from_dict(history_data) if isinstance(history_data, dict) else None
        return RunResult(arrays, history)
