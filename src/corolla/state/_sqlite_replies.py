"""Replies in SQLite: checking a node's reply, and the link's own error replies.

Every function here runs inside a transaction of :class:`SqliteLinkState`.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence

from corolla.core import Error, ErrorCode

from ._errors import ReplyRejectedError
from ._sqlite_rows import fetch_one
from ._types import DeliveryStatus, StoredMessage

__all__ = [
    "INSERT_REPLY",
    "OPEN",
    "answer_with_errors",
    "check_reply",
    "expiry_error",
    "node_lost",
    "set_offline",
]

#: The statuses of a message still waiting for its answer.
OPEN = (DeliveryStatus.PENDING.value, DeliveryStatus.DELIVERED.value)

INSERT_REPLY = (
    "INSERT INTO replies (reply_to, message_id, run_id, src_node_id, dst_node_id, group_id, "
    "message_type, ttl, created_at, content_hash, error_code, error_reason, stored_at, "
    "content, traceparent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def node_lost(row: sqlite3.Row) -> Error:
    """The answer to a message stored for a node that is offline already."""
    node = row["dst_node_id"]
    return Error(int(ErrorCode.NODE_UNAVAILABLE), f"node {node} is offline")


def expiry_error(row: sqlite3.Row) -> Error:
    """The answer to a message past its TTL: never taken, or taken and not answered."""
    if row["status"] == DeliveryStatus.PENDING.value:
        return Error(
            int(ErrorCode.MESSAGE_UNAVAILABLE),
            f"message expired after {row['ttl']} s before node {row['dst_node_id']} took it",
        )
    return Error(
        int(ErrorCode.REPLY_UNAVAILABLE),
        f"node {row['dst_node_id']} did not reply within the message's ttl of {row['ttl']} s",
    )


def set_offline(conn: sqlite3.Connection, node_id: int, now: float, why: str) -> None:
    """Mark a node offline and answer its open messages with ``NODE_UNAVAILABLE``."""
    conn.execute("UPDATE nodes SET online = 0 WHERE node_id = ?", (node_id,))
    rows = conn.execute(
        "SELECT * FROM messages WHERE dst_node_id = ? AND status IN (?, ?) ORDER BY rowid",
        (node_id, *OPEN),
    ).fetchall()
    lost = Error(int(ErrorCode.NODE_UNAVAILABLE), f"node {node_id} went offline: {why}")
    answer_with_errors(conn, rows, DeliveryStatus.FAILED, lambda _: lost, now)


def answer_with_errors(
    conn: sqlite3.Connection,
    rows: Sequence[sqlite3.Row],
    status: DeliveryStatus,
    error_for: Callable[[sqlite3.Row], Error],
    now: float,
) -> None:
    """End open messages with the link's own error replies, addressed as a node's would be."""
    replies = []
    for row in rows:
        error = error_for(row)
        replies.append(
            (
                row["message_id"],
                uuid.uuid4().hex,
                row["run_id"],
                row["dst_node_id"],
                row["src_node_id"],
                row["group_id"],
                row["message_type"],
                row["ttl"],
                now,
                None,
                error.code,
                error.reason,
                now,
                None,
                row["traceparent"],
            )
        )
    conn.executemany(INSERT_REPLY, replies)
    conn.executemany(
        "UPDATE messages SET status = ? WHERE message_id = ?",
        [(status.value, row["message_id"]) for row in rows],
    )


def check_reply(
    conn: sqlite3.Connection, request: sqlite3.Row, reply: StoredMessage, now: float
) -> None:
    """Raise unless ``reply`` may answer ``request``, or repeats the reply stored for it."""
    md = reply.metadata
    message_id = request["message_id"]
    if md.src_node_id != request["dst_node_id"]:
        raise ReplyRejectedError(
            f"message {message_id!r} was sent to node {request['dst_node_id']}, "
            f"not to node {md.src_node_id}"
        )
    status = DeliveryStatus(request["status"])
    if status is DeliveryStatus.REPLIED:
        stored = fetch_one(conn, "SELECT * FROM replies WHERE reply_to = ?", message_id)
        assert stored is not None  # a replied message has its reply, by construction
        same_error = (stored["error_code"], stored["error_reason"]) == (
            (None, None) if reply.error is None else (reply.error.code, reply.error.reason)
        )
        if stored["content_hash"] == reply.content_hash and same_error:
            return
        raise ReplyRejectedError(f"message {message_id!r} already has a different reply")
    if status in (DeliveryStatus.EXPIRED, DeliveryStatus.FAILED):
        stored = fetch_one(conn, "SELECT * FROM replies WHERE reply_to = ?", message_id)
        reason = "" if stored is None else f": {stored['error_reason']}"
        raise ReplyRejectedError(
            f"message {message_id!r} was already answered by the link ({status.value}{reason})"
        )
    if md.message_type != request["message_type"]:
        raise ReplyRejectedError(
            f"message {message_id!r} has type {request['message_type']!r}; "
            f"its reply has {md.message_type!r}"
        )
    if status is DeliveryStatus.PENDING:
        raise ReplyRejectedError(f"message {message_id!r} was not delivered yet")
    if request["expires_at"] <= now:
        raise ReplyRejectedError(
            f"message {message_id!r} expired (ttl {request['ttl']} s) before its reply arrived"
        )
