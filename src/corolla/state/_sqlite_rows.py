"""Rows of the SQLite state: lookups that name what is missing, and rows turned into values.

Every function here runs inside a transaction of :class:`SqliteLinkState`.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from corolla.core import Error, Event, Metadata

from ._checks import fits_sqlite, hash_token, new_id
from ._errors import NodeAuthenticationError, StorageError, UnknownNodeError, UnknownRunError
from ._types import EventEntry, NodeInfo, RunInfo, RunStatus, StoredMessage

__all__ = [
    "CHUNK",
    "authenticate",
    "get_node_row",
    "get_run_row",
    "to_instruction",
    "messages_by_id",
    "to_node_info",
    "to_reply",
    "fetch_one",
    "to_run_info",
    "unknown_node",
    "unknown_run",
    "unused_id",
]

#: Ids per ``IN (...)`` list; far below SQLite's limit on bound parameters.
CHUNK = 500
#: A fresh random 63-bit id is taken with probability n / 2**63; this many in a row means
#: the random source is broken, not unlucky.
ID_ATTEMPTS = 16


def fetch_one(conn: sqlite3.Connection, query: str, *params: Any) -> sqlite3.Row | None:
    """The first row ``query`` selects, or None."""
    found: sqlite3.Row | None = conn.execute(query, params).fetchone()
    return found


def unused_id(conn: sqlite3.Connection, table: str, column: str) -> int:
    for _ in range(ID_ATTEMPTS):
        candidate = new_id()
        if fetch_one(conn, f"SELECT 1 FROM {table} WHERE {column} = ?", candidate) is None:
            return candidate
    raise StorageError(f"no unused id in {table} after {ID_ATTEMPTS} random draws")


def unknown_node(node_id: int) -> UnknownNodeError:
    return UnknownNodeError(f"unknown node id {node_id}: it never registered with this link")


def get_node_row(conn: sqlite3.Connection, node_id: int) -> sqlite3.Row:
    if not fits_sqlite(node_id):  # an id of 2**63 or more (the wire's are uint64)
        raise unknown_node(node_id)
    row = fetch_one(conn, "SELECT * FROM nodes WHERE node_id = ?", node_id)
    if row is None:
        raise unknown_node(node_id)
    return row


def unknown_run(run_id: int) -> UnknownRunError:
    return UnknownRunError(f"unknown run id {run_id}")


def get_run_row(conn: sqlite3.Connection, run_id: int) -> sqlite3.Row:
    if not fits_sqlite(run_id):
        raise unknown_run(run_id)
    row = fetch_one(conn, "SELECT * FROM runs WHERE run_id = ?", run_id)
    if row is None:
        raise unknown_run(run_id)
    return row


def authenticate(conn: sqlite3.Connection, node_id: int, token: str) -> sqlite3.Row:
    row = get_node_row(conn, node_id)
    if not isinstance(token, str) or not hmac.compare_digest(
        str(row["token_hash"]), hash_token(token)
    ):
        raise NodeAuthenticationError(f"wrong token for node {node_id}")
    return row


def to_node_info(row: sqlite3.Row) -> NodeInfo:
    return NodeInfo(
        node_id=int(row["node_id"]),
        attributes=json.loads(row["attributes"]),
        node_config=json.loads(row["node_config"]),
        registered_at=float(row["registered_at"]),
        last_heartbeat=float(row["last_heartbeat"]),
        heartbeat_interval=float(row["heartbeat_interval"]),
        online=bool(row["online"]),
    )


def to_run_info(row: sqlite3.Row) -> RunInfo:
    return RunInfo(
        run_id=int(row["run_id"]),
        bundle_hash=str(row["bundle_hash"]),
        run_config=json.loads(row["run_config"]),
        status=RunStatus(row["status"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        error=row["error"],
    )


def to_instruction(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        Metadata(
            run_id=int(row["run_id"]),
            message_id=str(row["message_id"]),
            src_node_id=int(row["src_node_id"]),
            dst_node_id=int(row["dst_node_id"]),
            reply_to_message_id="",
            group_id=str(row["group_id"]),
            message_type=str(row["message_type"]),
            ttl=float(row["ttl"]),
            created_at=float(row["created_at"]),
            traceparent=row["traceparent"] or "",
        ),
        content_hash=str(row["content_hash"]),
    )


def to_reply(row: sqlite3.Row) -> StoredMessage:
    metadata = Metadata(
        run_id=int(row["run_id"]),
        message_id=str(row["message_id"]),
        src_node_id=int(row["src_node_id"]),
        dst_node_id=int(row["dst_node_id"]),
        reply_to_message_id=str(row["reply_to"]),
        group_id=str(row["group_id"]),
        message_type=str(row["message_type"]),
        ttl=float(row["ttl"]),
        created_at=float(row["created_at"]),
        traceparent=row["traceparent"] or "",
    )
    if row["error_code"] is not None:
        return StoredMessage(metadata, error=Error(int(row["error_code"]), row["error_reason"]))
    content = row["content"]
    return StoredMessage(
        metadata,
        content_hash=str(row["content_hash"]),
        content=None if content is None else bytes(content),
    )


def messages_by_id(conn: sqlite3.Connection, ids: Sequence[str]) -> list[sqlite3.Row]:
    rows: list[sqlite3.Row] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows += conn.execute(
            f"SELECT * FROM messages WHERE message_id IN ({marks}) ORDER BY rowid", chunk
        ).fetchall()
    return rows


def to_event_entry(row: sqlite3.Row) -> EventEntry:
    """An ``events`` row as the entry it stores."""
    return EventEntry(
        seq=int(row["seq"]),
        event=Event(
            kind=row["kind"],
            run_id=int(row["run_id"]),
            round=row["round"],
            node_id=row["node_id"],
            data=json.loads(row["data"]),
            time=float(row["time"]),
        ),
    )
