"""Test doubles and builders shared by the state tests."""

from __future__ import annotations

import hashlib

from corolla.core import Error, Metadata
from corolla.state import StoredMessage


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: A content hash that stands for some serialized records.
CONTENT = digest(b"global model")


def instruction(
    run_id: int,
    dst_node_id: int,
    *,
    message_id: str = "",
    content_hash: str = CONTENT,
    message_type: str = "train",
    group_id: str = "1",
    ttl: float = 60.0,
) -> StoredMessage:
    """A message from the ServerApp to a node."""
    metadata = Metadata(
        run_id=run_id,
        message_id=message_id,
        src_node_id=0,
        dst_node_id=dst_node_id,
        reply_to_message_id="",
        group_id=group_id,
        message_type=message_type,
        ttl=ttl,
    )
    return StoredMessage(metadata, content_hash=content_hash)


def reply(
    request: StoredMessage,
    *,
    content_hash: str | None = None,
    error: Error | None = None,
    message_id: str = "",
    src_node_id: int | None = None,
    message_type: str | None = None,
    run_id: int | None = None,
) -> StoredMessage:
    """A node's reply to ``request``: content ``digest(b"update")`` unless told otherwise."""
    md = request.metadata
    metadata = Metadata(
        run_id=md.run_id if run_id is None else run_id,
        message_id=message_id,
        src_node_id=md.dst_node_id if src_node_id is None else src_node_id,
        dst_node_id=md.src_node_id,
        reply_to_message_id=md.message_id,
        group_id=md.group_id,
        message_type=md.message_type if message_type is None else message_type,
        ttl=md.ttl,
    )
    if error is None and content_hash is None:
        content_hash = digest(b"update")
    return StoredMessage(metadata, content_hash=content_hash, error=error)
