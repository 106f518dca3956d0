"""The Fleet service: what nodes call on the link (see ``proto/corolla/v1/fleet.proto``).

Tokens on the wire are ``<node_id>.<secret>``: the state keeps only the secret's hash,
keyed by node id, so the link reads the id from the token and checks the secret.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from corolla.core import ConfigError, CorollaError, Event, UserConfigValue
from corolla.state import (
    DeliveryStatus,
    NodeAuthenticationError,
    NodeIdentity,
    NodeInfo,
    StoredMessage,
    UnknownMessageError,
    UnknownNodeError,
)
from corolla.transport import (
    bearer_token,
    fleet_pb2,
    fleet_pb2_grpc,
    message_pb2,
    run_pb2,
    transfer_pb2,
    user_config_from_proto,
)

from ._convert import run_to_proto
from ._payloads import payload_status, serve_payload, store_pushed
from ._shared import (
    LinkShared,
    events_key,
    node_key,
    replies_key,
    servicer_errors,
    stream_errors,
)

__all__ = ["FleetServicer", "join_token", "split_token"]

#: How often an idle Receive stream checks that its caller is still there.
_LIVENESS_S = 1.0


def join_token(identity: NodeIdentity) -> str:
    """The token a node presents: its id and its secret."""
    return f"{identity.node_id}.{identity.token}"


def split_token(token: str) -> NodeIdentity:
    """The identity a wire token stands for.

    Raises
    ------
    NodeAuthenticationError
        If the token is not ``<node_id>.<secret>``.
    """
    node_id, sep, secret = token.partition(".")
    if not sep or not node_id.isdigit() or not secret:
        raise NodeAuthenticationError("malformed node token")
    return NodeIdentity(int(node_id), secret)


def _attributes(config: dict[str, UserConfigValue]) -> dict[str, str]:
    return {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in config.items()
    }


class FleetServicer(fleet_pb2_grpc.FleetServicer):
    """Registers nodes, pushes them their messages, and takes their replies."""

    def __init__(self, shared: LinkShared) -> None:
        self._shared = shared
        # Messages handed to a node and not answered yet: the state hands a message out
        # once, so a node whose stream broke gets these again when it reconnects.
        self._lock = threading.Lock()
        self._in_flight: dict[int, dict[str, StoredMessage]] = {}

    def _redeliveries(self, node_id: int) -> list[StoredMessage]:
        with self._lock:
            pending = dict(self._in_flight.get(node_id, {}))
        again = []
        for message_id, stored in pending.items():
            try:
                status = self._shared.state.message_status(message_id)
            except UnknownMessageError:
                status = DeliveryStatus.FAILED
            if status is DeliveryStatus.DELIVERED:
                again.append(stored)
            else:
                self._answered(node_id, message_id)
        return again

    def _handed_out(self, node_id: int, stored: StoredMessage) -> None:
        with self._lock:
            self._in_flight.setdefault(node_id, {})[stored.metadata.message_id] = stored

    def _answered(self, node_id: int, message_id: str) -> None:
        with self._lock:
            self._in_flight.get(node_id, {}).pop(message_id, None)

    def _node(self, context: grpc.ServicerContext) -> NodeInfo:
        token = bearer_token(context.invocation_metadata())
        if token is None:
            raise NodeAuthenticationError("missing bearer token")
        identity = split_token(token)
        try:
            return self._shared.state.authenticate_node(identity.node_id, identity.token)
        except UnknownNodeError as exc:
            # UNAUTHENTICATED, not NODE_UNAVAILABLE (gRPC UNAVAILABLE, which clients retry):
            # no retry makes a token of a node this link never registered valid.
            raise NodeAuthenticationError(f"the token names an unknown node: {exc}") from exc

    @servicer_errors
    def RegisterNode(
        self, request: fleet_pb2.RegisterNodeRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.RegisterNodeResponse:
        identity = None
        if request.node_id or request.token:
            identity = split_token(request.token)
            if identity.node_id != request.node_id:
                raise NodeAuthenticationError("the token does not belong to that node id")
        shared = self._shared
        try:
            registered = shared.state.register_node(
                attributes=_attributes(user_config_from_proto(request.attributes)),
                node_config=user_config_from_proto(request.node_config),
                heartbeat_interval=shared.heartbeat_interval,
                identity=identity,
            )
        except UnknownNodeError as exc:
            raise NodeAuthenticationError(
                f"cannot rejoin: {exc}; register without a node id and token"
            ) from exc
        shared.state.append_event(
            Event("node.join", 0, node_id=registered.node_id, data={"rejoin": identity is not None})
        )
        return fleet_pb2.RegisterNodeResponse(
            node_id=registered.node_id,
            token=join_token(registered),
            heartbeat_interval=shared.heartbeat_interval,
        )

    @servicer_errors
    def Heartbeat(
        self, request: fleet_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.HeartbeatResponse:
        node = self._node(context)
        self._shared.state.heartbeat(node.node_id)
        return fleet_pb2.HeartbeatResponse(heartbeat_interval=node.heartbeat_interval)

    @stream_errors
    def Receive(
        self, request: fleet_pb2.ReceiveRequest, context: grpc.ServicerContext
    ) -> Iterator[fleet_pb2.ReceiveResponse]:
        node_id = self._node(context).node_id
        shared = self._shared
        key = node_key(node_id)
        for stored in self._redeliveries(node_id):
            yield fleet_pb2.ReceiveResponse(message=shared.to_proto(stored))
        while context.is_active() and not shared.signals.closed:
            seen = shared.signals.generation(key)
            for stored in shared.state.fetch_messages(node_id):
                self._handed_out(node_id, stored)
                yield fleet_pb2.ReceiveResponse(message=shared.to_proto(stored))
            # Woken at once when a message is stored for this node; the timeout only
            # bounds how long a dead caller keeps this thread.
            shared.signals.wait(key, seen, _LIVENESS_S)

    @servicer_errors
    def SendReply(
        self, request: fleet_pb2.SendReplyRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.SendReplyResponse:
        node_id = self._node(context).node_id
        if request.message.metadata.src_node_id != node_id:
            raise NodeAuthenticationError(
                f"node {node_id} cannot send a reply as node {request.message.metadata.src_node_id}"
            )
        shared = self._shared
        try:
            stored = shared.to_stored(request.message)
            # Durable before the acknowledgement: store_reply commits before returning.
            message_id = shared.state.store_reply(stored)
        except CorollaError as exc:
            self._log_rejection(node_id, request.message.metadata, exc)
            raise
        self._answered(node_id, stored.metadata.reply_to_message_id)
        shared.signals.notify([replies_key(stored.metadata.run_id)])
        return fleet_pb2.SendReplyResponse(message_id=message_id)

    def _log_rejection(
        self, node_id: int, metadata: message_pb2.Metadata, exc: CorollaError
    ) -> None:
        """A ``reply.rejected`` event in the log of the run the refused reply names."""
        shared = self._shared
        run_id = metadata.run_id
        data = {
            "code": int(exc.code),
            "reason": str(exc),
            "reply_to": metadata.reply_to_message_id,
        }
        try:
            shared.state.get_run(run_id)
            shared.state.append_event(Event("reply.rejected", run_id, node_id=node_id, data=data))
        except CorollaError:  # no such run, or the state is closing: the caller is told
            return
        shared.signals.notify([events_key(run_id)])

    @servicer_errors
    def StatArrays(
        self, request: fleet_pb2.StatArraysRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.StatArraysResponse:
        self._node(context)
        return fleet_pb2.StatArraysResponse(
            arrays=[payload_status(self._shared.blobs, h) for h in request.sha256]
        )

    def PushArrays(
        self, request_iterator: Iterator[transfer_pb2.Chunk], context: grpc.ServicerContext
    ) -> fleet_pb2.PushArraysResponse:
        return self._push(request_iterator, context)

    @servicer_errors
    def _push(
        self, request_iterator: Iterator[transfer_pb2.Chunk], context: grpc.ServicerContext
    ) -> fleet_pb2.PushArraysResponse:
        self._node(context)
        return fleet_pb2.PushArraysResponse(
            arrays=store_pushed(self._shared.blobs, request_iterator)
        )

    @stream_errors
    def PullArrays(
        self, request: fleet_pb2.PullArraysRequest, context: grpc.ServicerContext
    ) -> Iterator[transfer_pb2.Chunk]:
        self._node(context)
        yield from serve_payload(self._shared.blobs, request.sha256, request.offset)

    @servicer_errors
    def GetRun(
        self, request: run_pb2.GetRunRequest, context: grpc.ServicerContext
    ) -> run_pb2.GetRunResponse:
        self._node(context)
        run = self._shared.state.get_run(request.run_id)
        return run_pb2.GetRunResponse(run=run_to_proto(self._shared, run))

    @stream_errors
    def PullBundle(
        self, request: fleet_pb2.PullBundleRequest, context: grpc.ServicerContext
    ) -> Iterator[transfer_pb2.Chunk]:
        self._node(context)
        if not any(r.bundle_hash == request.sha256 for r in self._shared.state.list_runs()):
            raise ConfigError(f"no run uses bundle {request.sha256[:12]}")
        yield from serve_payload(self._shared.blobs, request.sha256, request.offset)
