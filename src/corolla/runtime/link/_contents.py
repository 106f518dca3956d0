"""Message contents: stored once as blobs, checked on the way in, served from memory.

A message's content is stored as one blob, the serialized ``corolla.v1.RecordDict``
whose array entries name other blobs by hash. Every node of a round gets the same
content, so a round's global model is one content blob plus one blob per array,
whatever the number of nodes. When the link pushes a message to a node it embeds the
small arrays (within :data:`~corolla.transport.INLINE_ARRAY_BYTES`) in their entries:
that delivery form is built once per content and served to every node from memory.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable

from corolla.core import CodecError, Error, ErrorCode, MessageError, Metadata
from corolla.state import BlobStore, StoredMessage
from corolla.telemetry import Tracing
from corolla.transport import (
    INLINE_ARRAY_BYTES,
    array_entries,
    check_array_entry,
    embed_arrays,
    inline_array,
    inline_size,
    message_pb2,
    metadata_from_proto,
    metadata_to_proto,
    records_pb2,
    serialized_message,
    sha256_of,
)

from ._names import NamedBlobs, Namer

__all__ = ["INLINE_CONTENT_BYTES", "MessageContents"]

#: How many bytes of message contents the link keeps read, in their stored form and in
#: the delivery form with small arrays inline.
CACHED_CONTENT_BYTES = 64 * 1024 * 1024
#: The largest reply content (serialized records, with the arrays the node sent inline)
#: kept in the state's row rather than in a blob: room for INLINE_ARRAY_BYTES of arrays
#: and the reply's metrics.
INLINE_CONTENT_BYTES = 2 * 1024 * 1024
#: Contents whose referenced arrays are kept listed (a few rounds' worth).
_REFERENCED_KEPT = 4096


class MessageContents:
    """Stores the contents of messages coming in and serves them going out.

    Parameters
    ----------
    blobs
        Where contents and arrays are stored.
    names
        The names clients hold on blobs: a content stored ahead of its message is named
        by its sender until the message is stored.
    cached_bytes
        How many bytes of contents are kept read, as stored and as delivered.
    tracing
        With tracing on, a message that carries a trace context gets a span of the link's
        each time it is stored (``link store <type>``) and passed on (``link forward
        <type>``), and carries that span's context on: the link's hops of a round's trace.
    """

    def __init__(
        self,
        blobs: BlobStore,
        names: NamedBlobs,
        cached_bytes: int = CACHED_CONTENT_BYTES,
        tracing: Tracing | None = None,
    ) -> None:
        self._blobs = blobs
        self._names = names
        self._tracing = tracing or Tracing.off()
        # The serialized content of the latest messages read from blobs, as stored and as
        # delivered (small arrays inline): every node of a round gets the same content,
        # read from disk and built once rather than once per node.
        self._cache = _ContentCache(cached_bytes)
        self._referenced: dict[tuple[str, str], frozenset[str]] = {}

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
            if not self._blobs.exists(sha256):
                raise _NotHeldError(f"array {entry.name!r} (sha256 {sha256[:12]}) was not pushed")
            if self._blobs.size(sha256) != entry.encoded_size:
                if not self._blobs.verify(sha256):  # damaged, and removed: push it again
                    raise _NotHeldError(
                        f"array {entry.name!r} (sha256 {sha256[:12]}) was not pushed"
                    )
                raise CodecError(
                    f"array {entry.name!r} declares {entry.encoded_size} bytes; the stored "
                    f"payload {sha256[:12]} has {self._blobs.size(sha256)}"
                )

    def to_stored(
        self,
        proto: message_pb2.Message,
        *,
        namer: Namer,
        inline: bool = False,
        stored: dict[bytes, str] | None = None,
        serialized: tuple[bytes, str | None] | None = None,
    ) -> StoredMessage:
        """Store a message's content (its arrays already held) and describe it for the state;
        ``namer`` is the sender (see :meth:`settle`, once the state has the message).

        With ``inline`` (a node's reply), content of at most :data:`INLINE_CONTENT_BYTES`
        travels in the returned message, for the state to keep in the reply's row:
        durable with the row's commit, without a blob and its fsyncs. ``stored`` maps
        contents this call's caller already stored to their hash (a batch of messages
        sharing one content, the round's model, checks and stores it once); it is updated.
        ``serialized`` is the content's deterministic serialization, and its SHA-256 or
        None, when the caller has them.

        Raises
        ------
        MessageError, CodecError
            If the message is malformed or references arrays not held.
        """
        if not proto.HasField("metadata"):
            raise MessageError("message has no metadata")
        metadata = metadata_from_proto(proto.metadata)
        if metadata.traceparent and self._tracing.on:
            traceparent = self._hop("store", metadata)
            metadata = dataclasses.replace(metadata, traceparent=traceparent)
        body = proto.WhichOneof("body")
        if body == "content":
            if serialized is not None:
                content, digest = serialized
            else:
                content, digest = proto.content.SerializeToString(deterministic=True), None
            known = None if stored is None else stored.get(content)
            if known is not None:
                return StoredMessage(metadata, content_hash=known)
            self.check_arrays_held(proto)
            if inline and len(content) <= INLINE_CONTENT_BYTES:
                content_hash = digest or sha256_of(content)
                return StoredMessage(metadata, content_hash=content_hash, content=content)
            content_hash = self._names.put(content, namer)
            if stored is not None:
                stored[content] = content_hash
            return StoredMessage(metadata, content_hash=content_hash)
        if body == "error":
            return StoredMessage(metadata, error=Error(proto.error.code, proto.error.reason))
        raise MessageError("message carries neither content nor an error")

    def settle(
        self, stored: Iterable[tuple[message_pb2.Message, StoredMessage]], namer: Namer
    ) -> None:
        """The state now has these messages ``namer`` sent: settle the names of the blobs
        they name (a content blob and the arrays it references, each content looked at
        once; see ``_names``)."""
        if not self._names.has_open(namer):
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
        self._names.settle(hashes, namer)

    def serialized(self, stored: StoredMessage, *, inline: bool = False) -> bytes:
        """The wire form of a stored message, serialized: assembled from the stored bytes
        of its content without parsing them (see ``corolla.transport.serialized_message``).

        Arrays stay as stored (by hash, or inline as their sender sent them); with
        ``inline`` (a message pushed to a node), stored content carries its small arrays
        inline, within :data:`~corolla.transport.INLINE_ARRAY_BYTES`.
        """
        metadata = metadata_to_proto(stored.metadata)
        if metadata.traceparent and self._tracing.on:
            metadata.traceparent = self._hop("forward", stored.metadata)
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

    def _hop(self, what: str, metadata: Metadata) -> str:
        """The trace context of a span of the link's, ``what`` it does with a message,
        the child of the span that sent it."""
        attributes = {
            "corolla.run_id": metadata.run_id,
            "corolla.src_node_id": metadata.src_node_id,
            "corolla.dst_node_id": metadata.dst_node_id,
        }
        name = f"link {what} {metadata.message_type}"
        with self._tracing.span(name, metadata.traceparent, attributes=attributes) as span:
            return self._tracing.traceparent(span)

    def referenced(self, content_hash: str) -> frozenset[str]:
        """The arrays a stored content names by hash (not inline), which its receiver
        downloads: a node may download these, and only these, of a message it was sent."""
        key = ("referenced", content_hash)
        cached = self._referenced.get(key)
        if cached is None:
            proto = records_pb2.RecordDict()
            proto.ParseFromString(self._delivered(content_hash))
            cached = frozenset(array_entries(proto, include_inline=True))
            if len(self._referenced) >= _REFERENCED_KEPT:
                self._referenced.clear()
            self._referenced[key] = cached
        return cached

    def _content(self, content_hash: str) -> bytes:
        key = ("stored", content_hash)
        content = self._cache.get(key)
        if content is None:
            content = bytes(self._blobs.open(content_hash))
            self._cache.put(key, content)
        return content

    def _delivered(self, content_hash: str) -> bytes:
        """The stored content with its small arrays inline, as a node is sent it."""
        key = ("delivered", content_hash)
        content = self._cache.get(key)
        if content is not None:
            return content
        proto = records_pb2.RecordDict()
        proto.ParseFromString(self._content(content_hash))
        embed_arrays(proto, lambda sha256: bytes(self._blobs.open(sha256)))
        content = proto.SerializeToString(deterministic=True)
        self._cache.put(key, content)
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
