"""What the link's services share: the state, the blobs, wake-ups, and message storage.

A message's content is stored as one blob, the serialized ``corolla.v1.RecordDict``
whose array entries name other blobs by hash. Every node of a round gets the same
content, so a round's global model is one content blob plus one blob per array,
whatever the number of nodes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from corolla.core import CodecError, CorollaError, Error, ErrorCode, MessageError
from corolla.state import BlobStore, LinkState, StoredMessage
from corolla.transport import (
    abort,
    array_entries,
    check_array_entry,
    message_pb2,
    metadata_from_proto,
    metadata_to_proto,
    records_pb2,
)

from ._malformed import reject_malformed
from ._signal import Signals

__all__ = [
    "LinkShared",
    "events_key",
    "node_key",
    "replies_key",
    "servicer_errors",
    "stream_errors",
]

_log = logging.getLogger("corolla.runtime.link")

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


@dataclasses.dataclass
class LinkShared:
    """The link's state, blobs and signals, plus settings the services need."""

    state: LinkState
    blobs: BlobStore
    signals: Signals
    apps_dir: Path
    heartbeat_interval: float

    def check_arrays_held(self, proto: message_pb2.Message) -> None:
        """Every array a message references must be stored, with the declared size.

        Raises
        ------
        CodecError
            If an entry is malformed.
        MessageError
            If an array is not held (push it first) or its size disagrees.
        """
        for sha256, entry in array_entries(proto).items():
            check_array_entry(entry)
            if not self.blobs.exists(sha256):
                raise _NotHeldError(f"array {entry.name!r} (sha256 {sha256[:12]}) was not pushed")
            if self.blobs.size(sha256) != entry.encoded_size:
                raise CodecError(
                    f"array {entry.name!r} declares {entry.encoded_size} bytes; the stored "
                    f"payload {sha256[:12]} has {self.blobs.size(sha256)}"
                )

    def to_stored(self, proto: message_pb2.Message) -> StoredMessage:
        """Store a message's content (its arrays already held) and describe it for the state.

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
            self.check_arrays_held(proto)
            content_hash = self.blobs.put(proto.content.SerializeToString(deterministic=True))
            return StoredMessage(metadata, content_hash=content_hash)
        if body == "error":
            return StoredMessage(metadata, error=Error(proto.error.code, proto.error.reason))
        raise MessageError("message carries neither content nor an error")

    def to_proto(self, stored: StoredMessage) -> message_pb2.Message:
        """The wire form of a stored message (its arrays stay referenced by hash)."""
        proto = message_pb2.Message(metadata=metadata_to_proto(stored.metadata))
        if stored.content_hash is not None:
            content = records_pb2.RecordDict()
            content.ParseFromString(bytes(self.blobs.open(stored.content_hash)))
            proto.content.CopyFrom(content)
        elif stored.error is not None:
            proto.error.CopyFrom(
                message_pb2.Error(code=stored.error.code, reason=stored.error.reason)
            )
        return proto


class _NotHeldError(MessageError):
    """A message references an array the link does not hold."""

    code = ErrorCode.CONFLICT  # FAILED_PRECONDITION on the wire
