"""Messages and their metadata <-> their ``corolla.v1`` protobuf messages.

A message's content converts as a record dict (``_records``), its arrays coming back
separately by hash except those embedded within the caller's inline budget.
"""

from __future__ import annotations

from corolla.core import Error, Message, MessageError, Metadata

from ._array_entries import ArrayResolver
from ._encoded import EncodeCache, EncodedArray
from ._proto import message_pb2
from ._records import record_dict_from_proto, record_dict_to_proto
from ._values import INT64, uint64, valid_text

__all__ = ["message_from_proto", "message_to_proto", "metadata_from_proto", "metadata_to_proto"]


def metadata_to_proto(metadata: Metadata) -> message_pb2.Metadata:
    """Convert message metadata to protobuf.

    Raises
    ------
    MessageError
        If an id is not an int in ``[0, 2**64)`` or a string is not valid Unicode.
    """
    with valid_text(MessageError, "message metadata"):
        return _metadata_to_proto(metadata)


def _metadata_to_proto(metadata: Metadata) -> message_pb2.Metadata:
    return message_pb2.Metadata(
        run_id=uint64(metadata.run_id, "run_id"),
        message_id=metadata.message_id,
        src_node_id=uint64(metadata.src_node_id, "src_node_id"),
        dst_node_id=uint64(metadata.dst_node_id, "dst_node_id"),
        reply_to_message_id=metadata.reply_to_message_id,
        group_id=metadata.group_id,
        message_type=metadata.message_type,
        ttl=metadata.ttl,
        created_at=metadata.created_at,
        traceparent=metadata.traceparent,
    )


def metadata_from_proto(proto: message_pb2.Metadata) -> Metadata:
    """Rebuild message metadata from protobuf."""
    return Metadata(
        run_id=proto.run_id,
        message_id=proto.message_id,
        src_node_id=proto.src_node_id,
        dst_node_id=proto.dst_node_id,
        reply_to_message_id=proto.reply_to_message_id,
        group_id=proto.group_id,
        message_type=proto.message_type,
        ttl=proto.ttl,
        created_at=proto.created_at,
        traceparent=proto.traceparent,
    )


def message_to_proto(
    message: Message, cache: EncodeCache | None = None, *, inline_bytes: int = 0
) -> tuple[message_pb2.Message, dict[str, EncodedArray]]:
    """Convert a message to protobuf; its arrays come back separately, by content hash,
    except those embedded within ``inline_bytes`` (see :func:`record_dict_to_proto`).

    Raises
    ------
    MessageError
        If an id does not fit the wire.
    RecordError
        If an int of the content does not fit in 64 bits.
    """
    proto = message_pb2.Message(metadata=metadata_to_proto(message.metadata))
    arrays: dict[str, EncodedArray] = {}
    if message.has_content():
        content, arrays = record_dict_to_proto(message.content, cache, inline_bytes=inline_bytes)
        proto.content.CopyFrom(content)
    else:
        error = message.error
        if not INT64[0] <= error.code <= INT64[1]:
            raise MessageError(f"error code {error.code} does not fit in 64 bits")
        with valid_text(MessageError, "message error"):
            proto.error.CopyFrom(message_pb2.Error(code=error.code, reason=error.reason))
    return proto, arrays


def message_from_proto(proto: message_pb2.Message, resolve: ArrayResolver) -> Message:
    """Rebuild a message from protobuf, taking each referenced array from ``resolve``.

    Raises
    ------
    MessageError
        If metadata is missing, the message type is invalid, or the message carries
        neither content nor an error.
    RecordError, CodecError
        As :func:`record_dict_from_proto`.
    """
    if not proto.HasField("metadata"):
        raise MessageError("message has no metadata")
    metadata = metadata_from_proto(proto.metadata)
    body = proto.WhichOneof("body")
    if body == "content":
        return Message(record_dict_from_proto(proto.content, resolve), metadata=metadata)
    if body == "error":
        return Message(error=Error(proto.error.code, proto.error.reason), metadata=metadata)
    raise MessageError("message carries neither content nor an error")
