"""The ServerAppIo service: what a run's ServerApp process calls on its link.

See ``proto/corolla/v1/serverappio.proto``. The caller is named by its per-run secret,
so a process only ever reaches its own run's messages, replies and events.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import grpc

from corolla.core import ErrorCode, MessageError
from corolla.state import NodeAuthenticationError, StoredMessage, UnknownNodeError
from corolla.transport import (
    bearer_token,
    event_from_proto,
    fleet_pb2,
    length_delimited,
    message_pb2,
    serverappio_pb2,
    serverappio_pb2_grpc,
    transfer_pb2,
    user_config_to_proto,
)

from .._audit import audit_many
from ._handlers import servicer_errors, stream_errors
from ._names import run_namer
from ._payloads import data_bytes, serve_payload, store_pushed
from ._resources import LinkResources
from ._runs import RunProcesses
from ._wakeups import events_key, node_key, replies_key

__all__ = ["ServerAppIoServicer"]

#: Longest a reply stream waits between checks that its caller is still there.
_LIVENESS_S = 1.0
#: A reply stream's response holds the replies at hand, up to about this many bytes:
#: a thousand small replies stored in one batch travel in a few messages, not a thousand.
_RESPONSE_BYTES = 4 * 1024 * 1024
#: The field number of ``PullRepliesResponse.messages``.
_MESSAGES_FIELD = serverappio_pb2.PullRepliesResponse.MESSAGES_FIELD_NUMBER


class ServerAppIoServicer(serverappio_pb2_grpc.ServerAppIoServicer):
    """Carries a run's messages to the state and its replies back, as they arrive."""

    def __init__(self, shared: LinkResources, runs: RunProcesses) -> None:
        self._shared = shared
        self._runs = runs

    def redact(self, text: str) -> str:
        return self._shared.redact(text)

    def _run_id(self, context: grpc.ServicerContext) -> int:
        secret = bearer_token(context.invocation_metadata())
        run_id = None if secret is None else self._runs.run_for_secret(secret)
        if run_id is None:
            raise NodeAuthenticationError("unknown or missing run secret")
        return run_id

    @servicer_errors
    def GetNodes(
        self, request: serverappio_pb2.GetNodesRequest, context: grpc.ServicerContext
    ) -> serverappio_pb2.GetNodesResponse:
        self._run_id(context)
        nodes = self._shared.state.list_nodes(online=True)
        return serverappio_pb2.GetNodesResponse(
            node_ids=[n.node_id for n in nodes],
            nodes=[
                serverappio_pb2.NodeSummary(
                    node_id=n.node_id,
                    attributes=user_config_to_proto(n.attributes),
                    last_heartbeat_at=n.last_heartbeat,
                    node_config=user_config_to_proto(n.node_config),
                )
                for n in nodes
            ],
        )

    @servicer_errors
    def StatArrays(
        self, request: fleet_pb2.StatArraysRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.StatArraysResponse:
        run_id = self._run_id(context)
        return fleet_pb2.StatArraysResponse(
            arrays=self._shared.names.payload_statuses(request.sha256, run_namer(run_id))
        )

    def PushArrays(
        self, request_iterator: Iterator[transfer_pb2.Chunk], context: grpc.ServicerContext
    ) -> fleet_pb2.PushArraysResponse:
        return self._push(request_iterator, context)

    @servicer_errors
    def _push(
        self, request_iterator: Iterator[transfer_pb2.Chunk], context: grpc.ServicerContext
    ) -> fleet_pb2.PushArraysResponse:
        run_id = self._run_id(context)
        with self._shared.traffic.transfer("from_serverapps") as transfer:
            chunks = transfer.counted(request_iterator, data_bytes)
            statuses = store_pushed(self._shared.blobs, chunks)
        self._shared.names.mark_named((s.sha256 for s in statuses), run_namer(run_id))
        return fleet_pb2.PushArraysResponse(arrays=statuses)

    @stream_errors
    def PullArrays(  # type: ignore[override]  # serialized chunks (see _handlers)
        self, request: fleet_pb2.PullArraysRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        self._run_id(context)
        with self._shared.traffic.transfer("to_serverapps") as transfer:
            yield from serve_payload(
                self._shared.blobs, request.sha256, request.offset, count=transfer.count
            )

    @servicer_errors
    def PushMessages(
        self, request: serverappio_pb2.PushMessagesRequest, context: grpc.ServicerContext
    ) -> serverappio_pb2.PushMessagesResponse:
        run_id = self._run_id(context)
        shared = self._shared
        stored = []
        contents: dict[bytes, str] = {}  # the round's content is checked and stored once
        namer = run_namer(run_id)
        for proto in request.messages:
            message = shared.contents.to_stored(proto, namer=namer, stored=contents)
            if message.metadata.run_id != run_id or message.metadata.src_node_id != 0:
                raise MessageError(
                    f"run {run_id}'s ServerApp sent a message of run {message.metadata.run_id} "
                    f"from node {message.metadata.src_node_id}"
                )
            if not message.metadata.created_at:
                now = shared.clock.time()
                message = dataclasses.replace(
                    message, metadata=dataclasses.replace(message.metadata, created_at=now)
                )
            stored.append(message)
        try:
            ids = shared.state.store_messages(stored)
            refused: list[message_pb2.Error] = []
        except UnknownNodeError:
            ids, refused = self._store_to_known_nodes(stored)
        shared.contents.settle(zip(request.messages, stored), namer)
        audit_many(
            shared.audit,
            (
                (
                    "message.sent",
                    {
                        "run_id": run_id,
                        "message_id": message_id,
                        "node_id": message.metadata.dst_node_id,
                        "type": message.metadata.message_type,
                    },
                )
                for message, message_id in zip(stored, ids)
                if message_id
            ),
        )
        shared.signals.notify(
            [node_key(m.metadata.dst_node_id) for m in stored] + [replies_key(run_id)]
        )
        return serverappio_pb2.PushMessagesResponse(message_ids=ids, refused=refused)

    def _store_to_known_nodes(
        self, stored: list[StoredMessage]
    ) -> tuple[list[str], list[message_pb2.Error]]:
        """Store the messages whose destination is a node of this link; the others get
        ``""`` for an id and the error their ServerApp reads as their reply."""
        state = self._shared.state
        known = {node.node_id for node in state.list_nodes()}
        ids = iter(state.store_messages([m for m in stored if m.metadata.dst_node_id in known]))
        message_ids: list[str] = []
        refused: list[message_pb2.Error] = []
        for message in stored:
            node_id = message.metadata.dst_node_id
            if node_id in known:
                message_ids.append(next(ids))
                continue
            message_ids.append("")
            reason = f"no node {node_id} on this link: it never registered"
            refused.append(message_pb2.Error(code=int(ErrorCode.NODE_UNAVAILABLE), reason=reason))
        return message_ids, refused

    @stream_errors
    def PullReplies(  # type: ignore[override]  # serialized responses (see _handlers)
        self, request: serverappio_pb2.PullRepliesRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        run_id = self._run_id(context)
        shared = self._shared
        wanted = set(request.message_ids)
        deadline = time.monotonic() + request.timeout if request.timeout > 0 else None
        answered: set[str] = set()
        key = replies_key(run_id)
        # Replies stored from here on are read once each, by cursor; those stored before
        # come with the check that every id is a message of the run.
        seen = shared.signals.generation(key)
        cursor = shared.state.reply_cursor()
        replies = shared.state.get_replies(run_id, request.message_ids)
        while context.is_active() and not shared.signals.closed:
            # Serialized PullRepliesResponses, assembled from the stored bytes.
            batch: list[bytes] = []
            size = 0
            for reply in replies:
                answered_id = reply.metadata.reply_to_message_id
                if answered_id in wanted and answered_id not in answered:
                    answered.add(answered_id)
                    batch.append(
                        length_delimited(_MESSAGES_FIELD, shared.contents.serialized(reply))
                    )
                    size += len(batch[-1])
                    if size >= _RESPONSE_BYTES:
                        yield b"".join(batch)
                        batch, size = [], 0
            if batch:
                yield b"".join(batch)
            if len(answered) == len(wanted):
                return
            wait = _LIVENESS_S
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            shared.signals.wait(key, seen, wait)
            seen = shared.signals.generation(key)
            replies, cursor = shared.state.replies_since(run_id, cursor)

    @servicer_errors
    def ReleaseMessages(
        self, request: serverappio_pb2.ReleaseMessagesRequest, context: grpc.ServicerContext
    ) -> serverappio_pb2.ReleaseMessagesResponse:
        run_id = self._run_id(context)
        message_ids = list(request.message_ids)
        contents = self._shared.state.release_messages(run_id, message_ids)
        self._runs.collect_released(run_id, contents, message_ids)
        return serverappio_pb2.ReleaseMessagesResponse()

    @servicer_errors
    def EmitEvents(
        self, request: serverappio_pb2.EmitEventsRequest, context: grpc.ServicerContext
    ) -> serverappio_pb2.EmitEventsResponse:
        run_id = self._run_id(context)
        events = [
            dataclasses.replace(event_from_proto(proto)[1], run_id=run_id)
            for proto in request.events
        ]
        self._shared.state.append_events(events)
        self._shared.signals.notify([events_key(run_id)])
        return serverappio_pb2.EmitEventsResponse()

    @servicer_errors
    def SaveCheckpoint(
        self, request: serverappio_pb2.SaveCheckpointRequest, context: grpc.ServicerContext
    ) -> serverappio_pb2.SaveCheckpointResponse:
        run_id = self._run_id(context)
        shared = self._shared
        if not shared.blobs.exists(request.sha256):
            raise MessageError(f"checkpoint payload {request.sha256[:12]} was not pushed")
        before = shared.state.load_checkpoint(run_id)
        shared.state.save_checkpoint(run_id, request.round, request.sha256)
        shared.names.settle([request.sha256], run_namer(run_id))
        if before is not None and before.blob_hash != request.sha256:
            shared.replaced.add(run_id, before.blob_hash)
        return serverappio_pb2.SaveCheckpointResponse()

    @servicer_errors
    def LoadCheckpoint(
        self, request: serverappio_pb2.LoadCheckpointRequest, context: grpc.ServicerContext
    ) -> serverappio_pb2.LoadCheckpointResponse:
        run_id = self._run_id(context)
        checkpoint = self._shared.state.load_checkpoint(run_id)
        if checkpoint is None:
            return serverappio_pb2.LoadCheckpointResponse(found=False)
        return serverappio_pb2.LoadCheckpointResponse(
            found=True,
            round=checkpoint.round,
            sha256=checkpoint.blob_hash,
            size=self._shared.blobs.size(checkpoint.blob_hash),
        )
