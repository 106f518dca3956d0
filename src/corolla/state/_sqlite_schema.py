"""The SQLite schema as numbered migrations, and the code that applies them.

A database records in ``schema_version`` every migration applied to it. Opening one applies
the missing migrations, all in one transaction (SQLite's DDL is transactional, so an
upgrade happens completely or not at all), and refuses a database newer than this code.

Never edit a published migration: append a new one. A migration that must rebuild a table
follows SQLite's twelve-step procedure (https://www.sqlite.org/lang_altertable.html) and
uses ``PRAGMA defer_foreign_keys = ON``, since ``foreign_keys`` cannot change inside the
transaction.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence

from ._errors import SchemaVersionError

__all__ = ["MIGRATIONS", "Migration", "migrate", "schema_version"]


@dataclasses.dataclass(frozen=True)
class Migration:
    """One step of the schema: its number, what it does, and its SQL statements."""

    version: int
    description: str
    statements: tuple[str, ...]


_INITIAL = (
    """
    CREATE TABLE schema_version (
        version     INTEGER PRIMARY KEY,
        description TEXT NOT NULL,
        applied_at  REAL NOT NULL
    )
    """,
    """
    CREATE TABLE nodes (
        node_id            INTEGER PRIMARY KEY CHECK (node_id > 0),
        token_hash         TEXT NOT NULL,
        attributes         TEXT NOT NULL,
        node_config        TEXT NOT NULL,
        registered_at      REAL NOT NULL,
        last_heartbeat     REAL NOT NULL,
        heartbeat_interval REAL NOT NULL CHECK (heartbeat_interval > 0),
        online             INTEGER NOT NULL CHECK (online IN (0, 1))
    )
    """,
    "CREATE INDEX nodes_online ON nodes (online)",
    """
    CREATE TABLE runs (
        run_id      INTEGER PRIMARY KEY CHECK (run_id > 0),
        bundle_hash TEXT NOT NULL,
        run_config  TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN
                        ('pending', 'starting', 'running', 'finished', 'failed', 'stopped')),
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        started_at  REAL,
        ended_at    REAL,
        error       TEXT
    )
    """,
    "CREATE INDEX runs_status ON runs (status)",
    # Instructions: ServerApp -> node. The implicit rowid orders them as stored.
    """
    CREATE TABLE messages (
        message_id   TEXT NOT NULL UNIQUE,
        run_id       INTEGER NOT NULL REFERENCES runs (run_id),
        src_node_id  INTEGER NOT NULL,
        dst_node_id  INTEGER NOT NULL REFERENCES nodes (node_id),
        group_id     TEXT NOT NULL,
        message_type TEXT NOT NULL,
        ttl          REAL NOT NULL CHECK (ttl > 0),
        created_at   REAL NOT NULL,
        expires_at   REAL NOT NULL,
        content_hash TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN
                         ('pending', 'delivered', 'replied', 'expired', 'failed')),
        delivered_at REAL
    )
    """,
    "CREATE INDEX messages_to_deliver ON messages (dst_node_id, status)",
    "CREATE INDEX messages_to_expire ON messages (status, expires_at)",
    "CREATE INDEX messages_of_run ON messages (run_id, status)",
    # Replies: node -> ServerApp, or the link's own error replies. Keyed by the message
    # they answer, so a message can never have two.
    """
    CREATE TABLE replies (
        reply_to     TEXT PRIMARY KEY REFERENCES messages (message_id),
        message_id   TEXT NOT NULL UNIQUE,
        run_id       INTEGER NOT NULL REFERENCES runs (run_id),
        src_node_id  INTEGER NOT NULL,
        dst_node_id  INTEGER NOT NULL,
        group_id     TEXT NOT NULL,
        message_type TEXT NOT NULL,
        ttl          REAL NOT NULL,
        created_at   REAL NOT NULL,
        content_hash TEXT,
        error_code   INTEGER,
        error_reason TEXT,
        stored_at    REAL NOT NULL,
        CHECK ((content_hash IS NULL) <> (error_code IS NULL))
    )
    """,
    # run_id 0 holds the link's own events, so it is no foreign key; the code checks it.
    """
    CREATE TABLE events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id  INTEGER NOT NULL,
        kind    TEXT NOT NULL,
        round   INTEGER,
        node_id INTEGER,
        data    TEXT NOT NULL,
        time    REAL NOT NULL
    )
    """,
    "CREATE INDEX events_of_run ON events (run_id, seq)",
    """
    CREATE TABLE checkpoints (
        run_id    INTEGER PRIMARY KEY REFERENCES runs (run_id),
        round     INTEGER NOT NULL CHECK (round >= 0),
        blob_hash TEXT NOT NULL,
        saved_at  REAL NOT NULL
    )
    """,
)

#: Every migration, numbered from 1 without gaps.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "nodes, runs, messages, replies, events, checkpoints", _INITIAL),
    Migration(
        2,
        "replies keep small content in their row",
        # NULL: the content is the blob content_hash (or the reply is an error).
        ("ALTER TABLE replies ADD COLUMN content BLOB",),
    ),
    Migration(
        3,
        "messages record when their ServerApp released them",
        (
            # NULL: the ServerApp may still pull the message's reply.
            "ALTER TABLE messages ADD COLUMN released_at REAL",
            # What a live run may still read, found without scanning what it released.
            "CREATE INDEX messages_unreleased ON messages (run_id) WHERE released_at IS NULL",
        ),
    ),
    Migration(
        4,
        "messages and replies keep their trace context",
        # NULL: sent without tracing (or stored before).
        (
            "ALTER TABLE messages ADD COLUMN traceparent TEXT",
            "ALTER TABLE replies ADD COLUMN traceparent TEXT",
        ),
    ),
)


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version of the database behind ``conn``; 0 for an empty database.

    Raises
    ------
    SchemaVersionError
        If the database has tables but no ``schema_version``: it is not a state database.
    """
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if "schema_version" not in tables:
        if tables:
            raise SchemaVersionError(
                f"not a Corolla state database: it has tables {sorted(tables)} but no "
                "schema_version"
            )
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration], now: float) -> int:
    """Bring the database up to the last of ``migrations`` and return its version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). The write lock is taken
    before the version is read, so two processes opening one database migrate it once.

    Raises
    ------
    SchemaVersionError
        If the database is newer than the last migration, or not a state database.
    sqlite3.Error
        If a migration fails; the database is left as it was.
    """
    latest = migrations[-1].version if migrations else 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)
        if current > latest:
            raise SchemaVersionError(
                f"the state database has schema version {current}, newer than the {latest} "
                "this Corolla knows: upgrade Corolla, or use another state path"
            )
        for migration in migrations:
            if migration.version > current:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.description, now),
                )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return latest
