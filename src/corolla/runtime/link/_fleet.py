"""The Fleet service: what nodes call on the link (see ``proto/corolla/v1/fleet.proto``).

The servicer runs on a ``grpc.aio`` server (see ``_async_server``): a node's ``Receive`` stream
waits as a coroutine, and what blocks (the state's transactions, blob writes) runs on
the server's thread pool, which the handlers await. The two calls every node makes every
round, handing out its messages and storing its reply, are gathered across nodes into
batches (see ``_batching``): one thread hop, one transaction and one fsync for all the
replies that arrived while the previous batch was stored.

A node's ``Receive`` stream also carries notices of runs that ended (``_run_ends``), and
its end marks the node offline at once (``_presence``).

Every call of a node presents its token (see ``_tokens``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc

from corolla.core import CodecError, ConfigError, CorollaError, Event, UserConfigValue
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
    check_sha256,
    fleet_pb2,
    fleet_pb2_grpc,
    length_delimited,
    message_pb2,
    run_pb2,
    transfer_pb2,
    user_config_from_proto,
)

from ._batching import LoopBatcher
from ._handlers import aio_servicer_errors, aio_stream_errors, bounded, caller_text
from ._names import node_namer
from ._payloads import data_bytes, serve_payload, store_pushed
from ._presence import Presence
from ._records import check_config_size, run_to_proto
from ._resources import LinkResources
from ._tokens import TokenCache, caller_identity, join_token, split_token
from ._traffic import Transfer
from ._wakeups import events_key, node_key, replies_key

__all__ = ["FleetServicer"]

#: How often an idle Receive stream wakes by itself. Nothing needs it to: a caller that
#: goes away cancels its stream, and a stopping link wakes every stream. It bounds what
#: a missed wake-up could cost, at a thousand idle nodes' wake-ups a minute.
_LIVENESS_S = 60.0
#: Uploads up to this size are read whole before they are stored.
_SMALL_UPLOAD_BYTES = 1024 * 1024

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


def _attributes(config: dict[str, UserConfigValue]) -> dict[str, str]:
    return {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in config.items()
    }


class FleetServicer(fleet_pb2_grpc.FleetServicer):
    """Registers nodes, pushes them their messages, and takes their replies.

    Parameters
    ----------
    shared
        The link's state, blobs and signals.
    executor
        Runs the short blocking work of the handlers.
    uploads
        Writes uploads to the blob store as their chunks arrive.
    """

    def __init__(
        self, shared: LinkResources, executor: futures.Executor, uploads: futures.Executor
    ) -> None:
        self._shared = shared
        self._executor = executor
        self._uploads = uploads
        # Messages handed to a node and not answered yet: the state hands a message out
        # once, so a node whose stream broke gets these again when it reconnects.
        self._lock = threading.Lock()
        self._in_flight: dict[int, dict[str, StoredMessage]] = {}
        self._tokens = TokenCache()
        self._presence = Presence(shared)
        limits = shared.limits
        self._download_slots = asyncio.Semaphore(limits.download_streams)
        self._upload_slots = asyncio.Semaphore(limits.upload_streams)
        # Upload slots set aside by StatArrays for the node that must push, by node id,
        # with the timer that gives each back if its upload does not come.
        self._set_aside: dict[int, asyncio.TimerHandle] = {}
        self._deliveries: LoopBatcher[int, list[StoredMessage]] = LoopBatcher(
            executor, self._deliver
        )
        self._replies: LoopBatcher[tuple[int, message_pb2.Message], fleet_pb2.SendReplyResponse] = (
            LoopBatcher(executor, self._send_replies, size=_reply_size)
        )

    def redact(self, text: str) -> str:
        return self._shared.redact(text)

    async def _blocking(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the executor, awaited."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

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

    async def _node_id(self, context: Context) -> int:
        """The id of the node whose token the call presents."""
        identity = caller_identity(context.invocation_metadata())
        if not self._tokens.accepts(identity):
            await self._blocking(self._authenticate, identity)
        return identity.node_id

    def _authenticate(self, identity: NodeIdentity) -> NodeInfo:
        """The node, its token checked by the state (and remembered if accepted)."""
        try:
            node = self._shared.state.authenticate_node(identity.node_id, identity.token)
        except UnknownNodeError as exc:
            self._tokens.forget(identity.node_id)
            # UNAUTHENTICATED, not NODE_UNAVAILABLE (gRPC UNAVAILABLE, which clients retry):
            # no retry makes a token of a node this link never registered valid.
            raise NodeAuthenticationError(f"the token names an unknown node: {exc}") from exc
        except NodeAuthenticationError:
            self._tokens.forget(identity.node_id)
            raise
        self._tokens.remember(identity)
        return node

    @aio_servicer_errors
    async def RegisterNode(
        self, request: fleet_pb2.RegisterNodeRequest, context: Context
    ) -> fleet_pb2.RegisterNodeResponse:
        return await self._blocking(self._register, request)

    def _register(self, request: fleet_pb2.RegisterNodeRequest) -> fleet_pb2.RegisterNodeResponse:
        limit = self._shared.limits.max_config_bytes
        check_config_size("the node's attributes", request.attributes, limit)
        check_config_size("the node's config", request.node_config, limit)
        identity = None
        if request.node_id or request.token:
            identity = split_token(request.token)
            if identity.node_id != request.node_id:
                raise NodeAuthenticationError("the token does not belong to that node id")
            self._tokens.forget(identity.node_id)
        shared = self._shared
        try:
            registered = shared.state.register_node(
                attributes=_attributes(user_config_from_proto(request.attributes)),
                node_config=user_config_from_proto(request.node_config),
                heartbeat_interval=shared.limits.heartbeat_interval,
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
            heartbeat_interval=shared.limits.heartbeat_interval,
        )

    @aio_servicer_errors
    async def Heartbeat(
        self, request: fleet_pb2.HeartbeatRequest, context: Context
    ) -> fleet_pb2.HeartbeatResponse:
        identity = caller_identity(context.invocation_metadata())
        return await self._blocking(self._heartbeat, identity)

    def _heartbeat(self, identity: NodeIdentity) -> fleet_pb2.HeartbeatResponse:
        # Checked by the state every time: heartbeats are rare, and the reply needs the
        # node's interval.
        node = self._authenticate(identity)
        self._shared.state.heartbeat(node.node_id)
        return fleet_pb2.HeartbeatResponse(heartbeat_interval=node.heartbeat_interval)

    @aio_stream_errors
    async def Receive(  # type: ignore[override]  # serialized ReceiveResponses (_handlers)
        self, request: fleet_pb2.ReceiveRequest, context: Context
    ) -> AsyncIterator[bytes]:
        node_id = await self._node_id(context)
        shared = self._shared
        if self._presence.opened(node_id):
            await self._blocking(self._presence.back_online, node_id)
        try:
            async for response in self._receive(node_id, request.run_notices):
                yield response
        finally:
            # However the stream ended (the node went away: gRPC cancels this coroutine),
            # unless the link is stopping. Not awaited: a cancelled coroutine cannot wait.
            if self._presence.closed(node_id) and not shared.signals.closed:
                self._executor.submit(self._presence.disconnected, node_id)

    async def _receive(self, node_id: int, notices: bool) -> AsyncIterator[bytes]:
        shared = self._shared
        key = node_key(node_id)
        for stored in await self._blocking(self._redeliveries, node_id):
            yield _receive_response(shared.contents.serialized(stored, inline=True))
        changed = True
        while not shared.signals.closed:
            seen = shared.signals.generation(key)
            if changed:
                if notices:
                    for run_id, reason in shared.run_ends.take(node_id):
                        yield _run_ended_response(run_id, reason)
                for stored in await self._deliveries.submit(node_id):
                    yield _receive_response(shared.contents.serialized(stored, inline=True))
            # Woken at once when a message is stored for this node or a run it serves
            # ends; a caller that goes away cancels the stream. The timeout brings nothing
            # new, so a thousand idle nodes cost no state transactions.
            changed = await shared.signals.wait_async(key, seen, _LIVENESS_S)

    def _deliver(self, node_ids: Sequence[int]) -> list[list[StoredMessage] | BaseException]:
        """Hand out the pending messages of each node, in one transaction; a node named
        twice gets its messages once."""
        fetched = self._shared.state.fetch_messages_many(node_ids)
        given: set[int] = set()
        results: list[list[StoredMessage] | BaseException] = []
        for node_id in node_ids:
            outcome = fetched[node_id]
            if isinstance(outcome, BaseException) or node_id in given:
                results.append(outcome if isinstance(outcome, BaseException) else [])
                continue
            given.add(node_id)
            for stored in outcome:
                self._handed_out(node_id, stored)
            if outcome:
                self._shared.run_ends.handed_out(node_id, {s.metadata.run_id for s in outcome})
            results.append(outcome)
        return results

    @aio_servicer_errors
    async def SendReply(
        self, request: fleet_pb2.SendReplyRequest, context: Context
    ) -> fleet_pb2.SendReplyResponse:
        node_id = await self._node_id(context)
        return await self._replies.submit((node_id, request.message))

    @aio_stream_errors
    async def SendReplies(
        self, request_iterator: AsyncIterator[fleet_pb2.SendReplyRequest], context: Context
    ) -> AsyncIterator[fleet_pb2.SendRepliesResponse]:
        node_id = await self._node_id(context)
        async for request in request_iterator:
            try:
                stored = await self._replies.submit((node_id, request.message))
            except CorollaError as exc:  # refused: the stream goes on
                error = message_pb2.Error(code=int(exc.code), reason=caller_text(self, exc))
                yield fleet_pb2.SendRepliesResponse(error=error)
            else:
                yield fleet_pb2.SendRepliesResponse(message_id=stored.message_id)

    def _send_replies(
        self, replies: Sequence[tuple[int, message_pb2.Message]]
    ) -> list[fleet_pb2.SendReplyResponse | BaseException]:
        """Check and store a batch of replies, durably, in one commit; each reply gets
        its id, or the error that refused it (logged in its run's events)."""
        shared = self._shared
        results: list[fleet_pb2.SendReplyResponse | BaseException] = [
            fleet_pb2.SendReplyResponse()
        ] * len(replies)
        accepted: list[tuple[int, StoredMessage]] = []
        for position, (node_id, proto) in enumerate(replies):
            try:
                accepted.append((position, self._checked_reply(node_id, proto)))
            except Exception as exc:
                results[position] = exc
        # Durable before the acknowledgement: store_replies commits before returning.
        outcomes = shared.state.store_replies([stored for _, stored in accepted])
        woken = set()
        for (position, stored), outcome in zip(accepted, outcomes):
            node_id, proto = replies[position]
            if isinstance(outcome, CorollaError):
                self._log_rejection(node_id, proto.metadata, outcome)
                results[position] = outcome
                continue
            self._answered(node_id, stored.metadata.reply_to_message_id)
            shared.contents.settle([(proto, stored)], node_namer(node_id))
            woken.add(replies_key(stored.metadata.run_id))
            results[position] = fleet_pb2.SendReplyResponse(message_id=outcome)
        if woken:
            shared.signals.notify(sorted(woken))
        return results

    def _checked_reply(self, node_id: int, proto: message_pb2.Message) -> StoredMessage:
        """The reply a node sent, checked and ready for the state (its content inline
        when small)."""
        if proto.metadata.src_node_id != node_id:
            raise NodeAuthenticationError(
                f"node {node_id} cannot send a reply as node {proto.metadata.src_node_id}"
            )
        try:
            return self._shared.contents.to_stored(proto, namer=node_namer(node_id), inline=True)
        except CorollaError as exc:
            self._log_rejection(node_id, proto.metadata, exc)
            raise

    def _log_rejection(
        self, node_id: int, metadata: message_pb2.Metadata, exc: CorollaError
    ) -> None:
        """A ``reply.rejected`` event in the log of the run the refused reply names."""
        shared = self._shared
        run_id = metadata.run_id
        # Bounded: what a node sent (its reply_to, quoted in the reason) may be megabytes.
        data = {
            "code": int(exc.code),
            "reason": caller_text(self, exc),
            "reply_to": bounded(metadata.reply_to_message_id, 100),
        }
        try:
            shared.state.get_run(run_id)
            shared.state.append_event(Event("reply.rejected", run_id, node_id=node_id, data=data))
        except CorollaError:  # no such run, or the state is closing: the caller is told
            return
        shared.signals.notify([events_key(run_id)])

    @aio_servicer_errors
    async def StatArrays(
        self, request: fleet_pb2.StatArraysRequest, context: Context
    ) -> fleet_pb2.StatArraysResponse:
        node_id = await self._node_id(context)
        statuses = self._shared.names.payload_statuses(request.sha256, node_namer(node_id))
        if any(not s.complete for s in statuses):
            await self._set_aside_slot(node_id)
        return fleet_pb2.StatArraysResponse(arrays=statuses)

    async def _set_aside_slot(self, node_id: int) -> None:
        """Take an upload slot for ``node_id``'s coming PushArrays, waiting for one up to
        ``slot_wait_s``. A node told what to push opens its upload stream at once, and gRPC
        lets it send a flow-control window's worth (megabytes on a fast network) before
        the link reads anything: waiting here instead, the node holds none of the link's
        memory. Without a slot in time, the upload waits for one in PushArrays."""
        if node_id in self._set_aside:
            return
        try:
            await asyncio.wait_for(self._upload_slots.acquire(), self._shared.limits.slot_wait_s)
        except TimeoutError:
            return
        loop = asyncio.get_running_loop()
        kept = self._shared.limits.slot_kept_s
        self._set_aside[node_id] = loop.call_later(kept, self._give_back_slot, node_id)

    def _give_back_slot(self, node_id: int) -> None:
        if self._set_aside.pop(node_id, None) is not None:
            self._upload_slots.release()

    @aio_servicer_errors
    async def PushArrays(
        self, request_iterator: AsyncIterator[transfer_pb2.Chunk], context: Context
    ) -> fleet_pb2.PushArraysResponse:
        node_id = await self._node_id(context)
        set_aside = self._set_aside.pop(node_id, None)
        if set_aside is not None:
            set_aside.cancel()  # the slot is this upload's
        else:
            await self._upload_slots.acquire()
        try:
            with self._shared.traffic.transfer("from_nodes") as transfer:
                statuses = await self._store_upload(request_iterator, transfer)
        finally:
            self._upload_slots.release()
        self._shared.names.mark_named((s.sha256 for s in statuses), node_namer(node_id))
        return fleet_pb2.PushArraysResponse(arrays=statuses)

    async def _store_upload(
        self, request_iterator: AsyncIterator[transfer_pb2.Chunk], transfer: Transfer
    ) -> list[transfer_pb2.PayloadStatus]:
        # A small upload (a model update of a light node) is read here whole and stored
        # in one hop to a pool thread. A large one is stored as its chunks come: a pool
        # thread of its own takes them from this loop one at a time, so it is never held
        # in memory whole.
        head: list[transfer_pb2.Chunk] = []
        size = 0
        async for chunk in request_iterator:
            head.append(chunk)
            size += len(chunk.data)
            transfer.count(len(chunk.data))
            if size > _SMALL_UPLOAD_BYTES:
                break
        else:
            return await self._blocking(store_pushed, self._shared.blobs, head)
        loop = asyncio.get_running_loop()
        chunks = _blocking_iterator(request_iterator, loop, self._shared.limits.chunk_wait_s)
        rest = transfer.counted(chunks, data_bytes)
        return await loop.run_in_executor(
            self._uploads, store_pushed, self._shared.blobs, itertools.chain(head, rest)
        )

    @aio_stream_errors
    async def PullArrays(  # type: ignore[override]  # serialized chunks (see _handlers)
        self, request: fleet_pb2.PullArraysRequest, context: Context
    ) -> AsyncIterator[bytes]:
        await self._node_id(context)
        async with self._download_slots:
            with self._shared.traffic.transfer("to_nodes") as transfer:
                for frame in serve_payload(
                    self._shared.blobs, request.sha256, request.offset, count=transfer.count
                ):
                    yield frame

    @aio_servicer_errors
    async def GetRun(
        self, request: run_pb2.GetRunRequest, context: Context
    ) -> run_pb2.GetRunResponse:
        await self._node_id(context)
        return await self._blocking(self._get_run, request.run_id)

    def _get_run(self, run_id: int) -> run_pb2.GetRunResponse:
        run = self._shared.state.get_run(run_id)
        return run_pb2.GetRunResponse(run=run_to_proto(self._shared, run))

    @aio_stream_errors
    async def PullBundle(  # type: ignore[override]  # serialized chunks (see _handlers)
        self, request: fleet_pb2.PullBundleRequest, context: Context
    ) -> AsyncIterator[bytes]:
        await self._node_id(context)
        check_sha256(request.sha256)
        runs = await self._blocking(self._shared.state.list_runs)
        if not any(r.bundle_hash == request.sha256 for r in runs):
            raise ConfigError(f"no run uses bundle {request.sha256[:12]}")
        async with self._download_slots:
            for chunk in serve_payload(self._shared.blobs, request.sha256, request.offset):
                yield chunk


def _reply_size(item: tuple[int, message_pb2.Message]) -> int:
    """The bytes a reply waiting to be stored holds (its arrays sent inline)."""
    return item[1].ByteSize()


def _receive_response(message: bytes) -> bytes:
    """A serialized ``ReceiveResponse`` carrying the serialized ``message``."""
    return length_delimited(1, message)


def _run_ended_response(run_id: int, reason: str) -> bytes:
    """A serialized ``ReceiveResponse`` telling that run ``run_id`` ended."""
    notice = fleet_pb2.RunEnded(run_id=run_id, reason=reason)
    return fleet_pb2.ReceiveResponse(run_ended=notice).SerializeToString()


def _blocking_iterator(
    chunks: AsyncIterator[transfer_pb2.Chunk], loop: asyncio.AbstractEventLoop, wait_s: float
) -> Iterator[transfer_pb2.Chunk]:
    """The items of an async iterator served on ``loop``, for a thread that blocks; each
    waited for ``wait_s`` at most."""

    async def following() -> transfer_pb2.Chunk | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None

    while True:
        future = asyncio.run_coroutine_threadsafe(following(), loop)
        try:
            chunk = future.result(wait_s)
        except futures.TimeoutError:
            future.cancel()
            raise CodecError(f"no chunk of the upload came for {wait_s:.0f} s") from None
        if chunk is None:
            return
        yield chunk
