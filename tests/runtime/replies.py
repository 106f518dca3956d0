"""Replies a test node sends: an update carried inline, and one whose bytes were altered."""

from __future__ import annotations

import numpy as np

from corolla.core import ArrayRecord, Message, RecordDict
from corolla.transport import INLINE_ARRAY_BYTES, message_pb2, message_to_proto


def inline_reply(node_id: int, request: Message, update: np.ndarray) -> message_pb2.Message:
    """Node ``node_id``'s reply to ``request``, ``update`` carried inline: nothing to push."""
    reply = Message(RecordDict({"arrays": ArrayRecord({"w": update})}), reply_to=request)
    proto, to_push = message_to_proto(
        reply.with_metadata(src_node_id=node_id), inline_bytes=INLINE_ARRAY_BYTES
    )
    assert to_push == {}
    return proto


def tampered(reply: message_pb2.Message) -> message_pb2.Message:
    """``reply`` with the last element of its first inline array changed after hashing:
    the same size, bytes that do not hash to the entry."""
    entry = reply.content.records[0].array_record.entries[0]
    last = np.frombuffer(entry.data[-4:], dtype=np.float32)[0]
    entry.data = entry.data[:-4] + np.float32(last + 1).tobytes()
    return reply
