"""The Fleet service: what nodes call on the link (see ``proto/corolla/v1/fleet.proto``).

The servicer runs on a ``grpc.aio`` server (see ``_async_server``): a node's ``Receive`` stream
waits as a coroutine, and what blocks (the state's transactions, blob writes) runs on
the server's thread pool, which the handlers await. The two calls every node makes every
round, handing out its messages and storing its reply, are gathered across nodes into
batches (see ``_batching``): one thread hop, one transaction and one fsync for all the
replies that arrived while the previous batch was stored.

A node's ``Receive`` stream also carries notices of runs that ended (``_run_ends``), and
its end marks the node offline at once (``_presence``).

Every call of a node presents its token (see ``_tokens``). A link with ``auth`` on also
admits only nodes whose keys an admin registered, and checks the signature of every
request (see ``corolla.trust``'s signed requests): RegisterNode's with the key it presents,
every later call's with the key its node registered with, or with the session key the
node offered in its registration (an HMAC, forty times cheaper to check than a
signature: see ``corolla.trust``'s session keys). A node has one session, that of its
latest registration; the link keeps it in memory, for the key it was agreed with.
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from corolla.core import (
    AuthenticationError,
    CodecError,
    ConfigError,
    CorollaError,
    Event,
    PermissionDeniedError,
    UserConfigValue,
)
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
    sha256_of,
    signed_reply_body,
    transfer_pb2,
    user_config_from_proto,
)
from corolla.trust import (
    PUBLIC_KEY_KEY,
    REPLY_ITEM_METHOD,
    RequestSignature,
    RequestVerifier,
    SessionKey,
    accept_session,
    public_key_from_text,
    public_key_text,
    request_body,
)

from .._audit import RecordBudget, audit, audit_many, reason_summary
from ._admission import admit_node
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
#: Registrations one node key may make a minute (with auth).
_REGISTRATIONS_PER_MINUTE = 10
#: Arrays a node uploaded that it may download again, the latest per node.
_PUSHED_KEPT = 256
#: Uploads up to this size are read whole before they are stored.
_SMALL_UPLOAD_BYTES = 1024 * 1024

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]

_FLEET = "/corolla.v1.Fleet/"


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
        # The last arrays each node uploaded (it may download them again).
        self._pushed: dict[int, dict[str, None]] = {}
        self._tokens = TokenCache()
        # With auth: the registered key of each node, as last read from the trust store
        # (dropped whenever node keys change), and the nonces of recent requests.
        self._keys: dict[int, tuple[str, Ed25519PublicKey]] = {}
        self._keys_version = -1
        # With auth: the session key of each registered key's latest registration, with
        # the node id it was agreed for.
        self._sessions: dict[str, tuple[int, SessionKey]] = {}
        self._verifier = RequestVerifier(shared.limits.request_max_age_s, clock=shared.clock.time)
        self._presence = Presence(shared)
        limits = shared.limits
        self._download_slots = asyncio.Semaphore(limits.download_streams)
        self._upload_slots = asyncio.Semaphore(limits.upload_streams)
        # Upload slots set aside by StatArrays for the node that must push, by node id,
        # with the timer that gives each back if its upload does not come.
        self._set_aside: dict[int, asyncio.TimerHandle] = {}
        self._node_uploads: dict[int, asyncio.Lock] = {}
        self._registrations: dict[str, list[float]] = {}
        self._refusals = RecordBudget(shared.clock.monotonic)
        self._deliveries: LoopBatcher[int, list[StoredMessage]] = LoopBatcher(
            executor, self._deliver
        )
        self._replies: LoopBatcher[_Reply, fleet_pb2.SendReplyResponse] = LoopBatcher(
            executor, self._send_replies, size=_reply_size
        )
        self._heartbeats: LoopBatcher[NodeIdentity, fleet_pb2.HeartbeatResponse] = LoopBatcher(
            executor, self._heartbeat
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

    async def _node_id(self, context: Context, method: str, request: Any = None) -> int:
        """The id of the node whose token the call presents; with auth, once the call's
        signature checks out with the node's key (over ``request``, or no bytes for a
        stream of requests)."""
        metadata = context.invocation_metadata()
        identity = caller_identity(metadata)
        if not self._tokens.accepts(identity):
            await self._blocking(self._authenticate, identity)
        if self._shared.auth:
            try:
                body = b"" if request is None else request_body(request)
                signature = RequestSignature.from_metadata(metadata)
                await self._check_signed(identity.node_id, _FLEET + method, signature, body)
            except AuthenticationError as exc:
                self._refused(method, exc, node_id=identity.node_id)
                raise
        return identity.node_id

    def _refused(self, method: str, exc: CorollaError, **who: Any) -> None:
        """Record a refused request in the audit log, from the executor (the log's fsync
        does not hold the event loop), within the budget of records of refusals a
        second: a flood of bad requests is counted, not written one by one."""
        extra = self._refusals.take()
        if extra is None:
            return
        data = {"method": method, "code": exc.code.name, "reason": reason_summary(str(exc)), **who}
        self._executor.submit(audit, self._shared.audit, "request.refused", {**data, **extra})

    async def _check_signed(
        self, node_id: int, method: str, signature: RequestSignature, body: bytes
    ) -> None:
        entry = self._cached_key(node_id)
        if entry is None:
            entry = await self._blocking(self._registered_key, node_id)
        session = self._session(node_id, entry[0]) if signature.mac else None
        self._verifier.check(entry[1], entry[0], method, signature, body, session)

    def _session(self, node_id: int, key: str) -> SessionKey | None:
        """The session key agreed at the latest registration with ``key``, if that was
        node ``node_id``'s."""
        found = self._sessions.get(key)
        return found[1] if found is not None and found[0] == node_id else None

    def _cached_key(self, node_id: int) -> tuple[str, Ed25519PublicKey] | None:
        """Node ``node_id``'s registered key as last read, unless node keys changed since."""
        trust = self._shared.trust
        if self._keys_version != trust.node_keys_version:
            self._keys.clear()
            self._keys_version = trust.node_keys_version
        return self._keys.get(node_id)

    def _registered_key(self, node_id: int) -> tuple[str, Ed25519PublicKey]:
        text = self._shared.trust.bound_key(node_id)
        if text is None:
            raise AuthenticationError(
                f"node {node_id} has no registered key (it was removed, or the node joined "
                "before the link required keys): register the node's key with `corolla "
                "nodes add` and start the node again"
            )
        entry = (text, public_key_from_text(text))
        self._keys[node_id] = entry
        return entry

    async def _registering_key(
        self, context: Context, request: fleet_pb2.RegisterNodeRequest
    ) -> str:
        """The registered key a RegisterNode call presents and is signed with."""
        metadata = context.invocation_metadata()
        presented = next((v for k, v in metadata or () if k == PUBLIC_KEY_KEY), None)
        if not isinstance(presented, str):
            raise AuthenticationError(
                "this link admits only nodes with a registered key: the node presented none "
                f"({PUBLIC_KEY_KEY})"
            )
        try:
            key = public_key_from_text(presented)
        except ConfigError as exc:
            raise AuthenticationError(str(exc)) from None
        text = public_key_text(key)
        signature = RequestSignature.from_metadata(metadata)
        # Registered first: the verifier keeps the nonces of each key it accepts a
        # signature of, and a caller makes as many unregistered keys as it likes.
        if await self._blocking(self._shared.trust.node_key, text) is None:
            raise AuthenticationError(
                f"node key {text} is not registered on this link: its admin registers it "
                f"with `corolla nodes add {text}`"
            )
        self._verifier.check(key, text, _FLEET + "RegisterNode", signature, request_body(request))
        self._count_registration(text)
        return text

    def _count_registration(self, key: str) -> None:
        """Allow a key :data:`_REGISTRATIONS_PER_MINUTE` registrations a minute: each makes
        a node in the state, which a node restarting now and then needs few of."""
        now = self._shared.clock.monotonic()
        recent = [t for t in self._registrations.get(key, []) if now - t < 60.0]
        if len(recent) >= _REGISTRATIONS_PER_MINUTE:
            raise PermissionDeniedError(
                f"node key {key} registered {len(recent)} times within a minute: wait before "
                "registering again"
            )
        recent.append(now)
        self._registrations[key] = recent

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
        key = None
        if self._shared.auth:
            try:
                key = await self._registering_key(context, request)
            except CorollaError as exc:
                presented = dict(context.invocation_metadata() or ()).get(PUBLIC_KEY_KEY, "")
                self._refused("RegisterNode", exc, key=str(presented)[:80])
                raise
        return await self._blocking(self._register, request, key)

    def _register(
        self, request: fleet_pb2.RegisterNodeRequest, key: str | None = None
    ) -> fleet_pb2.RegisterNodeResponse:
        limit = self._shared.limits.max_config_bytes
        check_config_size("the node's attributes", request.attributes, limit)
        check_config_size("the node's config", request.node_config, limit)
        identity = None
        if request.node_id or request.token:
            identity = split_token(request.token)
            if identity.node_id != request.node_id:
                raise NodeAuthenticationError("the token does not belong to that node id")
            if key is not None and self._shared.trust.bound_key(identity.node_id) != key:
                raise NodeAuthenticationError(
                    f"node {identity.node_id} joined with another key; register without a "
                    "node id and token"
                )
            self._tokens.forget(identity.node_id)
        # Agreed before the node is registered: an offer that is no X25519 key is refused
        # with nothing changed.
        session = None
        if key is not None and request.session_key:
            session = accept_session(request.session_key, key)
        shared = self._shared
        admit_node(shared, _attributes(user_config_from_proto(request.attributes)), request.node_id)
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
        response = fleet_pb2.RegisterNodeResponse(
            node_id=registered.node_id,
            token=join_token(registered),
            heartbeat_interval=shared.limits.heartbeat_interval,
        )
        if key is not None:
            shared.trust.bind_node(registered.node_id, key)
            self._keys.pop(registered.node_id, None)
            if session is not None:
                self._sessions[key] = (registered.node_id, session[0])
                response.session_key = session[1]
            else:
                self._sessions.pop(key, None)
        shared.state.append_event(
            Event("node.join", 0, node_id=registered.node_id, data={"rejoin": identity is not None})
        )
        audit(
            shared.audit,
            "node.join",
            {
                "node_id": registered.node_id,
                "attributes": _attributes(user_config_from_proto(request.attributes)),
                "rejoin": identity is not None,
                **({"key": key} if key is not None else {}),
            },
        )
        return response

    @aio_servicer_errors
    async def Heartbeat(
        self, request: fleet_pb2.HeartbeatRequest, context: Context
    ) -> fleet_pb2.HeartbeatResponse:
        metadata = context.invocation_metadata()
        identity = caller_identity(metadata)
        if self._shared.auth:
            await self._node_id(context, "Heartbeat", request)
        return await self._heartbeats.submit(identity)

    def _heartbeat(
        self, identities: Sequence[NodeIdentity]
    ) -> list[fleet_pb2.HeartbeatResponse | BaseException]:
        """Record the heartbeats of a batch, in one transaction.

        Each token is checked by the state every time: a heartbeat is rare for one node,
        and its answer needs the node's interval. A thousand nodes beat dozens of times a
        second, and their beats come in bursts (nodes that joined together): batched,
        a burst is one hop to the pool and one commit.
        """
        nodes: list[NodeInfo | BaseException] = []
        for identity in identities:
            try:
                nodes.append(self._authenticate(identity))
            except CorollaError as exc:
                nodes.append(exc)
        beats = self._shared.state.heartbeat_many(
            node.node_id for node in nodes if isinstance(node, NodeInfo)
        )
        answers: list[fleet_pb2.HeartbeatResponse | BaseException] = []
        for node in nodes:
            if isinstance(node, BaseException):
                answers.append(node)
                continue
            error = beats[node.node_id]
            answers.append(
                error
                if error is not None
                else fleet_pb2.HeartbeatResponse(heartbeat_interval=node.heartbeat_interval)
            )
        return answers

    @aio_stream_errors
    async def Receive(  # type: ignore[override]  # serialized ReceiveResponses (_handlers)
        self, request: fleet_pb2.ReceiveRequest, context: Context
    ) -> AsyncIterator[bytes]:
        node_id = await self._node_id(context, "Receive", request)
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
        node_id = await self._node_id(context, "SendReply", request)
        return await self._replies.submit((node_id, request.message, None))

    @aio_stream_errors
    async def SendReplies(
        self, request_iterator: AsyncIterator[fleet_pb2.SendReplyRequest], context: Context
    ) -> AsyncIterator[fleet_pb2.SendRepliesResponse]:
        node_id = await self._node_id(context, "SendReplies")
        async for request in request_iterator:
            try:
                # Checked with the batch, on a thread of the pool, off the event loop
                # (the verification holds the GIL, but not the loop's turn).
                signature = None
                if self._shared.auth:
                    try:
                        signature = _item_signature(request)
                    except AuthenticationError as exc:
                        self._refused("SendReplies", exc, node_id=node_id)
                        raise
                stored = await self._replies.submit((node_id, request.message, signature))
            except CorollaError as exc:  # refused: the stream goes on
                error = message_pb2.Error(code=int(exc.code), reason=caller_text(self, exc))
                yield fleet_pb2.SendRepliesResponse(error=error)
            else:
                yield fleet_pb2.SendRepliesResponse(message_id=stored.message_id)

    def _send_replies(
        self, replies: Sequence[_Reply]
    ) -> list[fleet_pb2.SendReplyResponse | BaseException]:
        """Check and store a batch of replies, durably, in one commit; each reply gets
        its id, or the error that refused it (logged in its run's events)."""
        shared = self._shared
        results: list[fleet_pb2.SendReplyResponse | BaseException] = [
            fleet_pb2.SendReplyResponse()
        ] * len(replies)
        accepted: list[tuple[int, StoredMessage]] = []
        for position, (node_id, proto, signature) in enumerate(replies):
            try:
                # Serialized once, and hashed here only for a signature, which then
                # lends its hash to the stored content.
                content = None
                if proto.WhichOneof("body") == "content":
                    serialized = proto.content.SerializeToString(deterministic=True)
                    digest = None if signature is None else sha256_of(serialized)
                    content = (serialized, digest)
                if signature is not None:
                    self._check_signed_item(node_id, signature, proto, content)
                accepted.append((position, self._checked_reply(node_id, proto, content)))
            except Exception as exc:
                results[position] = exc
        # Durable before the acknowledgement: store_replies commits before returning.
        outcomes = shared.state.store_replies([stored for _, stored in accepted])
        woken = set()
        for (position, stored), outcome in zip(accepted, outcomes):
            node_id, proto, _ = replies[position]
            if isinstance(outcome, CorollaError):
                self._log_rejection(node_id, proto.metadata, outcome)
                results[position] = outcome
                continue
            self._answered(node_id, stored.metadata.reply_to_message_id)
            shared.contents.settle([(proto, stored)], node_namer(node_id))
            woken.add(replies_key(stored.metadata.run_id))
            results[position] = fleet_pb2.SendReplyResponse(message_id=outcome)
        audit_many(shared.audit, _reply_records(replies, results))
        if woken:
            shared.signals.notify(sorted(woken))
        return results

    def _check_signed_item(
        self,
        node_id: int,
        signature: RequestSignature,
        proto: message_pb2.Message,
        content: tuple[bytes, str | None] | None,
    ) -> None:
        """Check the signature of a reply written on a SendReplies stream (on a thread of
        the pool), over its metadata and the hash of its ``content`` (serialized, and
        hashed).

        Raises
        ------
        AuthenticationError
            If it does not check out.
        """
        try:
            entry = self._cached_key(node_id) or self._registered_key(node_id)
            body = signed_reply_body(proto, None if content is None else content[1])
            session = self._session(node_id, entry[0]) if signature.mac else None
            self._verifier.check(entry[1], entry[0], REPLY_ITEM_METHOD, signature, body, session)
        except AuthenticationError as exc:
            self._refused("SendReplies", exc, node_id=node_id)
            raise

    def _checked_reply(
        self, node_id: int, proto: message_pb2.Message, content: tuple[bytes, str | None] | None
    ) -> StoredMessage:
        """The reply a node sent, checked and ready for the state (its content inline
        when small; ``content`` serialized and hashed)."""
        if proto.metadata.src_node_id != node_id:
            raise NodeAuthenticationError(
                f"node {node_id} cannot send a reply as node {proto.metadata.src_node_id}"
            )
        try:
            return self._shared.contents.to_stored(
                proto, namer=node_namer(node_id), inline=True, serialized=content
            )
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
        node_id = await self._node_id(context, "StatArrays", request)
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
        node_id = await self._node_id(context, "PushArrays")
        # One upload at a time per node: a node cannot take the link's slots from others
        # by opening many streams.
        async with self._node_uploads.setdefault(node_id, asyncio.Lock()):
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
        with self._lock:
            pushed = self._pushed.setdefault(node_id, {})
            pushed.update((s.sha256, None) for s in statuses if s.complete)
            while len(pushed) > _PUSHED_KEPT:
                del pushed[next(iter(pushed))]
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

    def _check_granted(self, node_id: int, sha256: str) -> None:
        """A node downloads only the arrays named by the messages it was sent and has not
        answered yet, and those it uploaded lately.

        Raises
        ------
        PermissionDeniedError
            If none of them names ``sha256``.
        """
        with self._lock:
            pending = list(self._in_flight.get(node_id, {}).values())
            if sha256 in self._pushed.get(node_id, ()):
                return
        contents = self._shared.contents
        for stored in pending:
            if stored.content_hash is not None and sha256 in contents.referenced(
                stored.content_hash
            ):
                return
        raise PermissionDeniedError(
            f"node {node_id} was sent no message naming array {sha256[:12]}: a node "
            "downloads only the arrays of the messages it is serving"
        )

    def _check_run_served(self, node_id: int, run_id: int | None, bundle: str | None) -> None:
        """A node reads only the runs (and their bundles) it was sent messages of and is
        serving.

        Raises
        ------
        PermissionDeniedError
            If it is serving no message of that run (or of a run with that bundle).
        """
        with self._lock:
            runs = {s.metadata.run_id for s in self._in_flight.get(node_id, {}).values()}
        if run_id is not None and run_id in runs:
            return
        if bundle is not None:
            state = self._shared.state
            if any(state.get_run(r).bundle_hash == bundle for r in runs):
                return
        what = f"run {run_id}" if run_id is not None else f"bundle {str(bundle)[:12]}"
        raise PermissionDeniedError(
            f"node {node_id} is serving no message of {what}: a node reads only the runs it "
            "is sent messages of"
        )

    @aio_stream_errors
    async def PullArrays(  # type: ignore[override]  # serialized chunks (see _handlers)
        self, request: fleet_pb2.PullArraysRequest, context: Context
    ) -> AsyncIterator[bytes]:
        node_id = await self._node_id(context, "PullArrays", request)
        try:
            await self._blocking(self._check_granted, node_id, request.sha256)
        except PermissionDeniedError as exc:
            self._refused("PullArrays", exc, node_id=node_id)
            raise
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
        node_id = await self._node_id(context, "GetRun", request)
        try:
            await self._blocking(self._check_run_served, node_id, request.run_id, None)
        except PermissionDeniedError as exc:
            self._refused("GetRun", exc, node_id=node_id)
            raise
        return await self._blocking(self._get_run, request.run_id)

    def _get_run(self, run_id: int) -> run_pb2.GetRunResponse:
        run = self._shared.state.get_run(run_id)
        return run_pb2.GetRunResponse(run=run_to_proto(self._shared, run))

    @aio_stream_errors
    async def PullBundle(  # type: ignore[override]  # serialized chunks (see _handlers)
        self, request: fleet_pb2.PullBundleRequest, context: Context
    ) -> AsyncIterator[bytes]:
        node_id = await self._node_id(context, "PullBundle", request)
        check_sha256(request.sha256)
        try:
            await self._blocking(self._check_run_served, node_id, None, request.sha256)
        except PermissionDeniedError as exc:
            self._refused("PullBundle", exc, node_id=node_id)
            raise
        async with self._download_slots:
            for chunk in serve_payload(self._shared.blobs, request.sha256, request.offset):
                yield chunk


def _item_signature(request: fleet_pb2.SendReplyRequest) -> RequestSignature:
    """The signature of a reply written on a SendReplies stream.

    Raises
    ------
    AuthenticationError
        If the reply carries none.
    """
    signed = request.signature
    if signed.signature and signed.mac:
        raise AuthenticationError(
            "the reply carries both a signature and a session tag: a node sends one of them"
        )
    if not (signed.timestamp and signed.nonce and (signed.signature or signed.mac)):
        raise AuthenticationError(
            "the reply is not signed: this link admits only replies signed with the "
            "node's registered key"
        )
    if signed.mac:
        return RequestSignature(signed.timestamp, signed.nonce, signed.mac, mac=True)
    return RequestSignature(signed.timestamp, signed.nonce, signed.signature)


def _reply_records(
    replies: Sequence[_Reply],
    results: Sequence[fleet_pb2.SendReplyResponse | BaseException],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The audit records of a batch of replies: each stored, or refused and why."""
    for (node_id, proto, _), result in zip(replies, results):
        metadata = proto.metadata
        data: dict[str, Any] = {
            "run_id": metadata.run_id,
            # Bounded: a refused reply's may be megabytes, each written to the log.
            "reply_to": bounded(metadata.reply_to_message_id, 100),
            "node_id": node_id,
        }
        if isinstance(result, BaseException):
            code = int(result.code) if isinstance(result, CorollaError) else 0
            data.update(code=code, reason=reason_summary(str(result)))
            if metadata.src_node_id != node_id:  # a node answering as another one
                data["claimed_node_id"] = metadata.src_node_id
            yield "reply.rejected", data
        else:
            data["reply_id"] = result.message_id
            if proto.HasField("error"):
                data.update(outcome="error", code=proto.error.code)
            else:
                data["outcome"] = "ok"
            yield "reply.received", data


#: A reply to store: the node that sent it, the reply, and with auth its signature.
_Reply = tuple[int, message_pb2.Message, RequestSignature | None]


def _reply_size(item: _Reply) -> int:
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
