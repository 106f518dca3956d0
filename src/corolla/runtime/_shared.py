"""What the link's services share: the state, the blobs, wake-ups, and message storage.

A message's content is stored as one blob, the serialized ``corolla.v1.RecordDict``
whose array entries name other blobs by hash. Every node of a round gets the same
content, so a round's global model is one content blob plus one blob per array,
whatever the number of nodes. When the link pushes a message to a node it embeds the
small arrays (within :data:`~corolla.transport.INLINE_ARRAY_BYTES`) in their entries:
that delivery form is built once per content and served to every node from memory.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from corolla.core import CodecError, CorollaError, Error, ErrorCode, MessageError
from corolla.state import BlobStore, LinkState, StoredMessage
from corolla.transport import (
    ERROR_CODE_KEY,
    INLINE_ARRAY_BYTES,
    abort,
    array_entries,
    check_array_entry,
    embed_arrays,
    inline_array,
    inline_size,
    message_pb2,
    metadata_from_proto,
    metadata_to_proto,
    records_pb2,
    sha256_of,
    status_for,
    transfer_pb2,
)
from corolla.transport._framing import serialized_message

from ._malformed import reject_malformed
from ._payloads import payload_status
from ._signal import Signals
from ._traffic import TrafficMeter

__all__ = [
    "INLINE_CONTENT_BYTES",
    "USER_NAMER",
    "LinkShared",
    "Namer",
    "aio_servicer_errors",
    "aio_stream_errors",
    "events_key",
    "node_key",
    "node_namer",
    "replies_key",
    "run_namer",
    "servicer_errors",
    "stream_errors",
]

_log = logging.getLogger("corolla.runtime.link")

#: How many bytes of message contents the link keeps read, in their stored form and in
#: the delivery form with small arrays inline.
_CACHED_CONTENT_BYTES = 64 * 1024 * 1024
#: Seconds during which a blob a client was told of is not collected (see ``_collect``).
NAMED_GRACE_S = 120.0
#: Named blobs remembered before the older ones are forgotten.
_NAMED_LIMIT = 10_000
#: The largest reply content (serialized records, with the arrays the node sent inline)
#: kept in the state's row rather than in a blob: room for INLINE_ARRAY_BYTES of arrays
#: and the reply's metrics.
INLINE_CONTENT_BYTES = 2 * 1024 * 1024

F = TypeVar("F", bound=Callable[..., Any])


def node_key(node_id: int) -> tuple[str, int]:
    return ("node", node_id)


def replies_key(run_id: int) -> tuple[str, int]:
    return ("replies", run_id)


def events_key(run_id: int) -> tuple[str, int]:
    return ("events", run_id)


def servicer_errors(method: F) -> F:
    """End a unary call with the status of a corolla error it raised (others: INTERNAL);
    a request that did not parse ends it with ``INVALID_ARGUMENT`` (see ``_malformed``)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, reject_malformed(request), context)
        except CorollaError as exc:
            abort(context, exc)
        except Exception as exc:
            _log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]


def stream_errors(method: F) -> F:
    """:func:`servicer_errors` for handlers that return a stream of responses."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, reject_malformed(request), context)
        except CorollaError as exc:
            abort(context, exc)
        except Exception as exc:
            _log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]


async def _aio_abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    """End an asyncio call as :func:`corolla.transport.abort` ends a synchronous one."""
    if isinstance(exc, CorollaError):
        context.set_trailing_metadata(((ERROR_CODE_KEY, str(int(exc.code))),))
        await context.abort(status_for(exc), str(exc))
    _log.error("call failed", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


def aio_servicer_errors(method: F) -> F:
    """:func:`servicer_errors` for the coroutine handlers of a ``grpc.aio`` server."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(self, reject_malformed(request), context)
        except Exception as exc:
            await _aio_abort(context, exc)

    return wrapper  # type: ignore[return-value]


def aio_stream_errors(method: F) -> F:
    """:func:`stream_errors` for the async generator handlers of a ``grpc.aio`` server."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for response in method(self, reject_malformed(request), context):
                yield response
        except Exception as exc:
            await _aio_abort(context, exc)

    return wrapper  # type: ignore[return-value]


#: Who named a blob: a node (``("node", node_id)``), a run's ServerApp (``("run",
#: run_id)``), or a user submitting a run (``("user", 0)``).
Namer = tuple[str, int]


def node_namer(node_id: int) -> Namer:
    return ("node", node_id)


def run_namer(run_id: int) -> Namer:
    return ("run", run_id)


#: Bundles uploaded through the Control API.
USER_NAMER: Namer = ("user", 0)


@dataclasses.dataclass(slots=True)
class _Name:
    """When a client named a blob (``time.monotonic()``), and when a message of its that
    names the blob was stored, if it was."""

    named_at: float
    settled_at: float | None = None

    @property
    def last(self) -> float:
        return self.named_at if self.settled_at is None else self.settled_at


@dataclasses.dataclass
class LinkShared:
    """The link's state, blobs and signals, plus settings the services need."""

    state: LinkState
    blobs: BlobStore
    signals: Signals
    apps_dir: Path
    heartbeat_interval: float
    #: The array bytes the services move each way (see ``_traffic``).
    traffic: TrafficMeter = dataclasses.field(default_factory=TrafficMeter)
    # The serialized content of the latest messages read from blobs, as stored and as
    # delivered (small arrays inline): every node of a round gets the same content,
    # read from disk and built once rather than once per node.
    _contents: _ContentCache = dataclasses.field(
        default_factory=lambda: _ContentCache(_CACHED_CONTENT_BYTES), repr=False
    )
    # Blobs that clients were lately told are stored, or that were stored for them, by who
    # named them (see Namer). A client may be about to name them in a message, so the
    # collectors (``_collect``) leave them alone for NAMED_GRACE_S, or until the client's
    # message naming them is stored (``settle``).
    _named: dict[str, dict[Namer, _Name]] = dataclasses.field(default_factory=dict, repr=False)
    # The blobs each client named and has not settled: most replies name none, and need
    # not be looked through.
    _open: dict[Namer, set[str]] = dataclasses.field(default_factory=dict, repr=False)
    _blob_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    # The checkpoint records that a run's later checkpoints replaced, by run.
    _superseded: dict[int, set[str]] = dataclasses.field(default_factory=dict, repr=False)

    def note_superseded(self, run_id: int, blob_hash: str) -> None:
        """Run ``run_id``'s checkpoint ``blob_hash`` was replaced by a newer one."""
        with self._blob_lock:
            self._superseded.setdefault(run_id, set()).add(blob_hash)

    def superseded(self, run_id: int) -> set[str]:
        """The checkpoint records run ``run_id`` replaced (see :meth:`note_superseded`)."""
        with self._blob_lock:
            return set(self._superseded.get(run_id, ()))

    def forget_superseded(self, run_id: int, records: Iterable[str] | None = None) -> None:
        """Forget ``records`` (all of them if None) among run ``run_id``'s replaced
        checkpoints."""
        with self._blob_lock:
            if records is None:
                self._superseded.pop(run_id, None)
            else:
                self._superseded.get(run_id, set()).difference_update(records)

    def payload_statuses(
        self, hashes: Iterable[str], namer: Namer
    ) -> list[transfer_pb2.PayloadStatus]:
        """Whether each payload is stored (``StatArrays``); those stored count as named by
        the caller."""
        with self._blob_lock:
            statuses = [payload_status(self.blobs, h) for h in hashes]
            self._mark_named((s.sha256 for s in statuses if s.complete), namer)
        return statuses

    def mark_named(self, hashes: Iterable[str], namer: Namer) -> None:
        """Note that a client was just given or told of these blobs (see ``_named``)."""
        with self._blob_lock:
            self._mark_named(hashes, namer)

    def _mark_named(self, hashes: Iterable[str], namer: Namer) -> None:
        now = time.monotonic()
        for sha256 in hashes:
            self._named.setdefault(sha256, {})[namer] = _Name(now)
            self._open.setdefault(namer, set()).add(sha256)
        if len(self._named) > _NAMED_LIMIT:
            horizon = now - NAMED_GRACE_S
            for sha256 in list(self._named):
                names = self._named[sha256]
                for key in [k for k, n in names.items() if n.last < horizon]:
                    del names[key]
                    self._open.get(key, set()).discard(sha256)
                if not names:
                    del self._named[sha256]
            self._open = {k: v for k, v in self._open.items() if v}

    def settle(self, hashes: Iterable[str], namer: Namer) -> None:
        """The messages ``namer`` stored name these blobs: from now on, the state keeps
        them while it needs them, and the client's names stop holding them (once the
        collections that began before this call are over)."""
        now = time.monotonic()
        with self._blob_lock:
            opened = self._open.get(namer, set())
            for sha256 in hashes:
                name = self._named.get(sha256, {}).get(namer)
                if name is not None:
                    name.settled_at = now
                    opened.discard(sha256)
            if not opened:
                self._open.pop(namer, None)

    def delete_unnamed(self, sha256: str, *, since: float, ignore: Namer | None = None) -> bool:
        """Delete a blob unless a client still holds it; True if deleted.

        A client (other than ``ignore``) holds a blob it named within
        :data:`NAMED_GRACE_S` until it settles the name, and past that if it settled at or
        after ``since`` (``time.monotonic()`` before the caller read what the state names:
        the message naming the blob may have been stored after that read).
        """
        with self._blob_lock:
            now = time.monotonic()
            for namer, name in self._named.get(sha256, {}).items():
                if namer == ignore:
                    continue
                if name.settled_at is None:
                    if now - name.named_at < NAMED_GRACE_S:
                        return False
                elif name.settled_at >= since:
                    return False
            return self.blobs.delete(sha256)

    def _put_content(self, content: bytes, namer: Namer) -> str:
        with self._blob_lock:  # stored, or found stored, and named at once
            content_hash = self.blobs.put(content)
            self._mark_named((content_hash,), namer)
        return content_hash

    def check_arrays_held(self, proto: message_pb2.Message) -> None:
        """Every array a message references must be stored, with the declared size.

        An array carried inline must be the array its entry declares (size, hash, header),
        and a message carries at most :data:`~corolla.transport.INLINE_ARRAY_BYTES` of them.

        Raises
        ------
        CodecError
            If an entry is malformed, inline bytes are not the declared array, or the
            message carries more inline bytes than allowed.
        MessageError
            If an array is not held (push it first) or its size disagrees.
        """
        inline_bytes = inline_size(proto.content)
        if inline_bytes > INLINE_ARRAY_BYTES:
            raise CodecError(
                f"the message carries {inline_bytes} bytes of inline arrays; at most "
                f"{INLINE_ARRAY_BYTES} may travel inline, send the others by reference"
            )
        for sha256, entry in array_entries(proto, include_inline=True).items():
            if entry.data:
                inline_array(entry)
                continue
            check_array_entry(entry)
            if not self.blobs.exists(sha256):
                raise _NotHeldError(f"array {entry.name!r} (sha256 {sha256[:12]}) was not pushed")
            if self.blobs.size(sha256) != entry.encoded_size:
                raise CodecError(
                    f"array {entry.name!r} declares {entry.encoded_size} bytes; the stored "
                    f"payload {sha256[:12]} has {self.blobs.size(sha256)}"
                )

    def to_stored(
        self,
        proto: message_pb2.Message,
        *,
        namer: Namer,
        inline: bool = False,
        stored: dict[bytes, str] | None = None,
    ) -> StoredMessage:
        """Store a message's content (its arrays already held) and describe it for the state;
        ``namer`` is the sender (see :meth:`settle`, once the state has the message).

        With ``inline`` (a node's reply), content of at most :data:`INLINE_CONTENT_BYTES`
        travels in the returned message, for the state to keep in the reply's row:
        durable with the row's commit, without a blob and its fsyncs. ``stored`` maps
        contents this call's caller already stored to their hash (a batch of messages
        sharing one content, the round's model, checks and stores it once); it is updated.

        Raises
        ------
        MessageError, CodecError
            If the message is malformed or references arrays not held.
        """
        if not proto.HasField("metadata"):
            raise MessageError("message has no metadata")
        metadata = metadata_from_proto(proto.metadata)
        body = proto.WhichOneof("body")
        if body == "content":
            content = proto.content.SerializeToString(deterministic=True)
            known = None if stored is None else stored.get(content)
            if known is not None:
                return StoredMessage(metadata, content_hash=known)
            self.check_arrays_held(proto)
            if inline and len(content) <= INLINE_CONTENT_BYTES:
                return StoredMessage(metadata, content_hash=sha256_of(content), content=content)
            content_hash = self._put_content(content, namer)
            if stored is not None:
                stored[content] = content_hash
            return StoredMessage(metadata, content_hash=content_hash)
        if body == "error":
            return StoredMessage(metadata, error=Error(proto.error.code, proto.error.reason))
        raise MessageError("message carries neither content nor an error")

    def settle_stored(
        self, stored: Iterable[tuple[message_pb2.Message, StoredMessage]], namer: Namer
    ) -> None:
        """The state now has these messages ``namer`` sent: :meth:`settle` the blobs they
        name (a content blob and the arrays it references, each content looked at once)."""
        with self._blob_lock:
            if not self._open.get(namer):
                return  # it named nothing it has not settled
        hashes: set[str] = set()
        seen: set[str] = set()
        for proto, message in stored:
            if message.content_hash is None or message.content_hash in seen:
                continue
            seen.add(message.content_hash)
            if message.content is None:
                hashes.add(message.content_hash)
            hashes.update(array_entries(proto))
        self.settle(hashes, namer)

    def serialized(self, stored: StoredMessage, *, inline: bool = False) -> bytes:
        """The wire form of a stored message, serialized: assembled from the stored bytes
        of its content without parsing them (see ``corolla.transport._framing``).

        Arrays stay as stored (by hash, or inline as their sender sent them); with
        ``inline`` (a message pushed to a node), stored content carries its small arrays
        inline, within :data:`~corolla.transport.INLINE_ARRAY_BYTES`.
        """
        metadata = metadata_to_proto(stored.metadata)
        if stored.content is not None:
            return serialized_message(metadata, content=stored.content)
        if stored.content_hash is not None:
            content = (
                self._delivered(stored.content_hash)
                if inline
                else self._content(stored.content_hash)
            )
            return serialized_message(metadata, content=content)
        if stored.error is not None:
            error = message_pb2.Error(code=stored.error.code, reason=stored.error.reason)
            return serialized_message(metadata, error=error)
        return serialized_message(metadata)

    def _content(self, content_hash: str) -> bytes:
        key = ("stored", content_hash)
        content = self._contents.get(key)
        if content is None:
            content = bytes(self.blobs.open(content_hash))
            self._contents.put(key, content)
        return content

    def _delivered(self, content_hash: str) -> bytes:
        """The stored content with its small arrays inline, as a node is sent it."""
        key = ("delivered", content_hash)
        content = self._contents.get(key)
        if content is not None:
            return content
        proto = records_pb2.RecordDict()
        proto.ParseFromString(self._content(content_hash))
        embed_arrays(proto, lambda sha256: bytes(self.blobs.open(sha256)))
        content = proto.SerializeToString(deterministic=True)
        self._contents.put(key, content)
        return content


class _ContentCache:
    """Serialized contents by key, the oldest dropped beyond ``max_bytes`` in total."""

    def __init__(self, max_bytes: int) -> None:
        self._lock = threading.Lock()
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: dict[tuple[str, str], bytes] = {}

    def get(self, key: tuple[str, str]) -> bytes | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: tuple[str, str], content: bytes) -> None:
        if len(content) > self._max_bytes // 8:
            return  # a large content is read when needed, not kept
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = content
            self._bytes += len(content)
            while self._bytes > self._max_bytes:
                oldest = next(iter(self._entries))
                self._bytes -= len(self._entries.pop(oldest))


class _NotHeldError(MessageError):
    """A message references an array the link does not hold."""

    code = ErrorCode.CONFLICT  # FAILED_PRECONDITION on the wire
