"""SqliteLinkState: the embedded LinkState backend, a file (WAL mode) or ``:memory:``.

Threads: one connection, one lock. Every call takes the lock and runs one transaction.
SQLite admits one writer at a time whatever we do, the calls are short (microseconds; the
fsync of a commit dominates), and one connection behaves the same for a file and for
``:memory:`` (which per-thread connections could only share through shared-cache mode,
with its own table-lock errors). Writes open with ``BEGIN IMMEDIATE``, so another process
on the same file waits for the write lock (``busy_timeout``) instead of failing halfway
through a transaction.

Durability: a call that changes state commits before it returns. Concurrent writes share
their commit (group commit, see ``_sqlite_commit``): a thousand nodes replying at once
cost a few commits and fsyncs, not a thousand. With ``synchronous="FULL"`` (the default)
no write returns before the write-ahead log holding it is fsynced, so an acknowledged
reply survives power loss, not only a crash of the process. SQLite itself runs with its
``NORMAL`` setting, and the state fsyncs the log after each group of commits, outside
the connection's lock: the same guarantee as SQLite's ``FULL``, without every other call
waiting for the fsync. ``"NORMAL"`` leaves that fsync out: commits survive a crash of the
process (they are in the operating system's cache) and the last ones may be lost on
power loss.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from corolla.core import (
    ConfigError,
    CorollaError,
    Error,
    ErrorCode,
    Event,
    MessageError,
    UserConfigValue,
)

from ._base import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TOLERANCE, LinkState
from ._checks import (
    SQLITE_INT_MAX,
    SQLITE_INT_MIN,
    check_attributes,
    check_blob_hash,
    check_limit,
    check_seconds,
    check_user_config,
    dump_json,
    fits_sqlite,
    hash_token,
    new_token,
)
from ._errors import RunStatusError, StorageError, UnknownMessageError
from ._sqlite_checkpoint import BackgroundCheckpointer, backstop_pages
from ._sqlite_commit import GroupCommit
from ._sqlite_file import CORRUPT_CODES, IntegrityCheck, check_pages, corrupt, prepare_file
from ._sqlite_replies import (
    INSERT_REPLY,
    OPEN,
    answer_with_errors,
    check_reply,
    expiry_error,
    node_lost,
    set_offline,
)
from ._sqlite_rows import (
    CHUNK,
    authenticate,
    fetch_one,
    get_node_row,
    get_run_row,
    messages_by_id,
    to_event_entry,
    to_instruction,
    to_node_info,
    to_reply,
    to_run_info,
    unknown_node,
    unknown_run,
    unused_id,
)
from ._sqlite_schema import MIGRATIONS, migrate
from ._types import (
    RUN_TRANSITIONS,
    Checkpoint,
    DeliveryStatus,
    EventEntry,
    NodeIdentity,
    NodeInfo,
    RunInfo,
    RunStatus,
    StoredMessage,
)

__all__ = ["SqliteLinkState"]

#: Seconds a writer waits for another process's write lock before failing.
_BUSY_TIMEOUT = 30.0
#: Replies read at a time by :meth:`SqliteLinkState.run_contents`.
_CONTENT_PAGE = 256
#: The page size of a new database. A node's reply of 10k parameters (40 KB) is kept in
#: its row; at SQLite's default 4 KiB pages it spans ten overflow pages, and storing,
#: reading, checkpointing and dropping a round of a thousand of them costs twice the
#: CPU it does at 16 KiB (``benchmarks/deploy.py --workload b``).
PAGE_SIZE = 16_384


class SqliteLinkState(LinkState):
    """The link's state in SQLite.

    Parameters
    ----------
    path
        The database file, or ``":memory:"`` for a private in-memory database that ends
        with the object. A missing file is created (with its directory, and both
        readable by their owner only); an existing one is checked before it is used.
    clock
        Returns the current time in seconds since the epoch; inject a fake one in tests.
    synchronous
        ``"FULL"`` (no write returns before the log holding it is fsynced; survives
        power loss) or ``"NORMAL"`` (survives process crashes only; faster).
    check
        How an existing database is checked when opened: ``"quick"`` (SQLite's
        ``quick_check`` of every page: 0.2 s for 50,000 messages and replies here) or
        ``"full"`` (``integrity_check``, which also checks every index against its
        table, and so finds more damaged values: 0.65 s for the same).

    Raises
    ------
    CorruptStateError
        If the file is empty (0 bytes), not an SQLite database, or damaged; the
        message names the file and says what to do.
    SchemaVersionError
        If the database was written by a newer Corolla, or is not a state database.
    StorageError
        If the file cannot be created or opened, or does not support WAL.
    ConfigError
        If ``synchronous`` is neither ``"FULL"`` nor ``"NORMAL"``, or ``check`` is
        neither ``"quick"`` nor ``"full"``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        check: IntegrityCheck = "quick",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        if check not in ("quick", "full"):
            raise ConfigError(f"check must be 'quick' or 'full', got {check!r}")
        self._clock = clock
        in_memory = os.fspath(path) == ":memory:"
        target = ":memory:" if in_memory else Path(path)
        conn: sqlite3.Connection | None = None
        try:
            created = isinstance(target, Path) and prepare_file(target, PAGE_SIZE)
            conn = sqlite3.connect(
                target, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if not in_memory and str(mode).lower() != "wal":
                raise StorageError(
                    f"the state database {target} cannot use write-ahead logging (journal "
                    f"mode stays {mode!r}); put it on a local file system"
                )
            # FULL: SQLite's NORMAL, plus our own fsync of the log after each group of
            # commits, outside the connection's lock (see _sqlite_commit).
            wal = None if in_memory else Path(f"{target}-wal")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Checkpoints run on a thread of their own (see _sqlite_checkpoint).
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            conn.execute(f"PRAGMA wal_autocheckpoint = {backstop_pages(page_size)}")
            # Some builds (Debian's) zero every freed page, which writes a released round's
            # reply contents (40 MB for a thousand nodes' 10k-parameter updates) to the log
            # again as zeros. FAST zeroes what costs no more I/O; freed pages are reused.
            conn.execute("PRAGMA secure_delete = FAST")
            if isinstance(target, Path) and not created:
                check_pages(conn, target, check)
            migrate(conn, MIGRATIONS, clock())
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, StorageError):
                raise
            if isinstance(target, Path) and getattr(exc, "sqlite_errorcode", 0) in CORRUPT_CODES:
                raise corrupt(target, f"it is damaged ({exc})") from exc
            raise StorageError(f"cannot open the state database {target}: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._db = GroupCommit(conn, wal if synchronous == "FULL" else None)
        self._db.sync()  # the migrations, if any
        self._checkpointer = None if in_memory else BackgroundCheckpointer(Path(target))

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._db.close()

    # -- nodes -------------------------------------------------------------------------

    def register_node(
        self,
        *,
        attributes: Mapping[str, str] | None = None,
        node_config: Mapping[str, UserConfigValue] | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        identity: NodeIdentity | None = None,
    ) -> NodeIdentity:
        attrs = dump_json(check_attributes(attributes), "node attributes")
        config = dump_json(check_user_config(node_config, "node config"), "node config")
        interval = check_seconds(heartbeat_interval, "heartbeat interval")

        def work(conn: sqlite3.Connection) -> NodeIdentity:
            now = self._clock()
            if identity is not None:
                authenticate(conn, identity.node_id, identity.token)
                conn.execute(
                    "UPDATE nodes SET attributes = ?, node_config = ?, heartbeat_interval = ?, "
                    "last_heartbeat = ?, online = 1 WHERE node_id = ?",
                    (attrs, config, interval, now, identity.node_id),
                )
                return identity
            node_id = unused_id(conn, "nodes", "node_id")
            token = new_token()
            conn.execute(
                "INSERT INTO nodes (node_id, token_hash, attributes, node_config, "
                "registered_at, last_heartbeat, heartbeat_interval, online) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                (node_id, hash_token(token), attrs, config, now, now, interval),
            )
            return NodeIdentity(node_id, token)

        return self._db.write(work)

    def authenticate_node(self, node_id: int, token: str) -> NodeInfo:
        with self._db.read() as conn:
            return to_node_info(authenticate(conn, node_id, token))

    def heartbeat(self, node_id: int, heartbeat_interval: float | None = None) -> None:
        interval = (
            None
            if heartbeat_interval is None
            else check_seconds(heartbeat_interval, "heartbeat interval")
        )

        if not fits_sqlite(node_id):
            raise unknown_node(node_id)

        def work(conn: sqlite3.Connection) -> None:
            updated = conn.execute(
                "UPDATE nodes SET last_heartbeat = ?, online = 1, "
                "heartbeat_interval = coalesce(?, heartbeat_interval) WHERE node_id = ?",
                (self._clock(), interval, node_id),
            )
            if updated.rowcount == 0:
                raise unknown_node(node_id)

        self._db.write(work)

    def heartbeat_many(self, node_ids: Iterable[int]) -> dict[int, CorollaError | None]:
        wanted = list(dict.fromkeys(node_ids))
        beats: dict[int, CorollaError | None] = {
            node_id: None if fits_sqlite(node_id) else unknown_node(node_id) for node_id in wanted
        }

        def work(conn: sqlite3.Connection) -> None:
            now = self._clock()
            for node_id, error in beats.items():
                if error is not None:
                    continue
                updated = conn.execute(
                    "UPDATE nodes SET last_heartbeat = ?, online = 1 WHERE node_id = ?",
                    (now, node_id),
                )
                if updated.rowcount == 0:
                    beats[node_id] = unknown_node(node_id)

        if any(error is None for error in beats.values()):
            self._db.write(work)
        return beats

    def mark_stale_nodes_offline(self, tolerance: float = DEFAULT_HEARTBEAT_TOLERANCE) -> list[int]:
        factor = check_seconds(tolerance, "heartbeat tolerance")

        def work(conn: sqlite3.Connection) -> list[int]:
            now = self._clock()
            stale = [
                int(row[0])
                for row in conn.execute(
                    "SELECT node_id FROM nodes WHERE online = 1 "
                    "AND last_heartbeat + heartbeat_interval * ? < ? ORDER BY node_id",
                    (factor, now),
                )
            ]
            for node_id in stale:
                set_offline(conn, node_id, now, "missed its heartbeats")
            return stale

        return self._db.write(work)

    def mark_node_offline(self, node_id: int) -> None:
        def work(conn: sqlite3.Connection) -> None:
            get_node_row(conn, node_id)
            set_offline(conn, node_id, self._clock(), "disconnected")

        self._db.write(work)

    def get_node(self, node_id: int) -> NodeInfo:
        with self._db.read() as conn:
            return to_node_info(get_node_row(conn, node_id))

    def list_nodes(
        self, *, online: bool | None = None, attributes: Mapping[str, str] | None = None
    ) -> list[NodeInfo]:
        wanted = check_attributes(attributes)
        query = "SELECT * FROM nodes"
        params: tuple[Any, ...] = ()
        if online is not None:
            query += " WHERE online = ?"
            params = (int(bool(online)),)
        with self._db.read() as conn:
            rows = conn.execute(query + " ORDER BY node_id", params).fetchall()
        nodes = [to_node_info(row) for row in rows]
        return [n for n in nodes if all(n.attributes.get(k) == v for k, v in wanted.items())]

    # -- runs --------------------------------------------------------------------------

    def create_run(
        self, bundle_hash: str, run_config: Mapping[str, UserConfigValue] | None = None
    ) -> RunInfo:
        check_blob_hash(bundle_hash)
        config = dump_json(check_user_config(run_config, "run config"), "run config")

        def work(conn: sqlite3.Connection) -> RunInfo:
            now = self._clock()
            run_id = unused_id(conn, "runs", "run_id")
            conn.execute(
                "INSERT INTO runs (run_id, bundle_hash, run_config, status, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, bundle_hash, config, RunStatus.PENDING.value, now, now),
            )
            return to_run_info(get_run_row(conn, run_id))

        return self._db.write(work)

    def get_run(self, run_id: int) -> RunInfo:
        with self._db.read() as conn:
            return to_run_info(get_run_row(conn, run_id))

    def list_runs(self, *, status: RunStatus | None = None) -> list[RunInfo]:
        query = "SELECT * FROM runs"
        params: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            params = (_run_status(status).value,)
        with self._db.read() as conn:
            rows = conn.execute(query + " ORDER BY created_at, rowid", params).fetchall()
        return [to_run_info(row) for row in rows]

    def update_run_status(
        self, run_id: int, status: RunStatus, *, error: str | None = None
    ) -> RunInfo:
        target = _run_status(status)
        if error is not None and not isinstance(error, str):
            raise ConfigError(f"a run's error must be a str, got {type(error).__name__}")

        def work(conn: sqlite3.Connection) -> RunInfo:
            now = self._clock()
            current = RunStatus(get_run_row(conn, run_id)["status"])
            if target not in RUN_TRANSITIONS[current]:
                allowed = sorted(s.value for s in RUN_TRANSITIONS[current])
                raise RunStatusError(
                    f"run {run_id} is {current.value} and cannot become {target.value}; "
                    + (f"it may become {', '.join(allowed)}" if allowed else "it has ended")
                )
            conn.execute(
                "UPDATE runs SET status = ?, updated_at = ?, "
                "started_at = CASE WHEN ? THEN ? ELSE started_at END, "
                "ended_at = CASE WHEN ? THEN ? ELSE ended_at END, "
                "error = coalesce(?, error) WHERE run_id = ?",
                (
                    target.value,
                    now,
                    target is RunStatus.RUNNING,
                    now,
                    target.ended,
                    now,
                    error,
                    run_id,
                ),
            )
            if target.ended:
                rows = conn.execute(
                    "SELECT * FROM messages WHERE run_id = ? AND status IN (?, ?) ORDER BY rowid",
                    (run_id, *OPEN),
                ).fetchall()
                gone = Error(int(ErrorCode.MESSAGE_UNAVAILABLE), f"run {run_id} {target.value}")
                answer_with_errors(conn, rows, DeliveryStatus.FAILED, lambda _: gone, now)
            return to_run_info(get_run_row(conn, run_id))

        return self._db.write(work)

    # -- messages ----------------------------------------------------------------------

    def store_messages(self, messages: Iterable[StoredMessage]) -> list[str]:
        batch = list(messages)
        for message in batch:
            if not isinstance(message, StoredMessage):
                raise MessageError(f"expected a StoredMessage, got {type(message).__name__}")
            if message.metadata.reply_to_message_id:
                raise MessageError(
                    f"message {message.metadata.message_id!r} is a reply; store it with store_reply"
                )
            if message.error is not None:
                raise MessageError("a message to a node must carry content, not an error")
            if message.content is not None:
                # Every node of a round gets the same content: one blob, not a copy a row.
                raise MessageError("a message to nodes keeps its content in the blob store")
            if not fits_sqlite(message.metadata.src_node_id):
                raise unknown_node(message.metadata.src_node_id)

        def work(conn: sqlite3.Connection) -> list[str]:
            now = self._clock()
            for run_id in dict.fromkeys(m.metadata.run_id for m in batch):
                status = RunStatus(get_run_row(conn, run_id)["status"])
                if status.ended:
                    raise RunStatusError(f"run {run_id} is {status.value}; it takes no messages")
            online = {
                node_id: bool(get_node_row(conn, node_id)["online"])
                for node_id in dict.fromkeys(m.metadata.dst_node_id for m in batch)
            }
            ids: list[str] = []
            offline: list[str] = []
            taken: set[str] = set()
            for message in batch:
                md = message.metadata
                message_id = md.message_id or uuid.uuid4().hex
                if message_id in taken or fetch_one(
                    conn, "SELECT 1 FROM messages WHERE message_id = ?", message_id
                ):
                    raise MessageError(f"message id {message_id!r} is already taken")
                created_at = md.created_at or now
                conn.execute(
                    "INSERT INTO messages (message_id, run_id, src_node_id, dst_node_id, "
                    "group_id, message_type, ttl, created_at, expires_at, content_hash, status, "
                    "traceparent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message_id,
                        md.run_id,
                        md.src_node_id,
                        md.dst_node_id,
                        md.group_id,
                        md.message_type,
                        md.ttl,
                        created_at,
                        created_at + md.ttl,
                        message.content_hash,
                        DeliveryStatus.PENDING.value,
                        md.traceparent or None,
                    ),
                )
                ids.append(message_id)
                taken.add(message_id)
                if not online[md.dst_node_id]:
                    offline.append(message_id)
            if offline:
                rows = messages_by_id(conn, offline)
                answer_with_errors(conn, rows, DeliveryStatus.FAILED, node_lost, now)
            return ids

        return self._db.write(work)

    def fetch_messages(self, node_id: int, *, limit: int | None = None) -> list[StoredMessage]:
        sql_limit = check_limit(limit)

        def work(conn: sqlite3.Connection) -> list[StoredMessage]:
            now = self._clock()
            get_node_row(conn, node_id)
            rows = conn.execute(
                "SELECT rowid, * FROM messages WHERE dst_node_id = ? AND status = ? "
                "AND expires_at > ? ORDER BY rowid LIMIT ?",
                (node_id, DeliveryStatus.PENDING.value, now, sql_limit),
            ).fetchall()
            _mark_delivered(conn, rows, now)
            return [to_instruction(row) for row in rows]

        return self._db.write(work)

    def fetch_messages_many(
        self, node_ids: Iterable[int]
    ) -> dict[int, list[StoredMessage] | CorollaError]:
        # One query per CHUNK nodes rather than three statements per node: a round of a
        # thousand nodes is handed out in a few milliseconds.
        wanted = list(dict.fromkeys(node_ids))

        # No node has an id SQLite cannot hold: such ids are answered unknown unasked.
        storable = [node_id for node_id in wanted if fits_sqlite(node_id)]

        def work(conn: sqlite3.Connection) -> dict[int, list[StoredMessage] | CorollaError]:
            now = self._clock()
            known: set[int] = set()
            rows: dict[int, list[sqlite3.Row]] = {}
            for start in range(0, len(storable), CHUNK):
                chunk = storable[start : start + CHUNK]
                marks = ", ".join("?" * len(chunk))
                known.update(
                    int(row[0])
                    for row in conn.execute(
                        f"SELECT node_id FROM nodes WHERE node_id IN ({marks})", chunk
                    )
                )
                for row in conn.execute(
                    f"SELECT rowid, * FROM messages WHERE dst_node_id IN ({marks}) "
                    "AND status = ? AND expires_at > ? ORDER BY rowid",
                    (*chunk, DeliveryStatus.PENDING.value, now),
                ):
                    rows.setdefault(int(row["dst_node_id"]), []).append(row)
            _mark_delivered(conn, (row for node_rows in rows.values() for row in node_rows), now)
            return {
                node_id: [to_instruction(row) for row in rows.get(node_id, [])]
                if node_id in known
                else unknown_node(node_id)
                for node_id in wanted
            }

        return self._db.write(work) if wanted else {}

    def store_reply(self, reply: StoredMessage) -> str:
        return self._db.write(self._reply_work(reply))

    def store_replies(self, replies: Sequence[StoredMessage]) -> list[str | CorollaError]:
        works: list[Callable[[sqlite3.Connection], str] | CorollaError] = []
        for reply in replies:
            try:
                works.append(self._reply_work(reply))
            except CorollaError as exc:
                works.append(exc)
        valid = [w for w in works if not isinstance(w, CorollaError)]
        done = iter(_results_or_errors(self._db.write_many(valid)))
        return [w if isinstance(w, CorollaError) else next(done) for w in works]

    def _reply_work(self, reply: StoredMessage) -> Callable[[sqlite3.Connection], str]:
        if not isinstance(reply, StoredMessage):
            raise MessageError(f"expected a StoredMessage, got {type(reply).__name__}")
        md = reply.metadata
        if not md.reply_to_message_id:
            raise MessageError("a reply needs reply_to_message_id, the message it answers")
        if reply.error is not None and not fits_sqlite(reply.error.code):
            raise MessageError(f"error code {reply.error.code} is not a 64-bit integer")
        unknown_request = UnknownMessageError(
            f"run {md.run_id} has no message {md.reply_to_message_id!r} to reply to"
        )
        if not fits_sqlite(md.run_id):
            raise unknown_request

        def work(conn: sqlite3.Connection) -> str:
            now = self._clock()
            request = fetch_one(
                conn,
                "SELECT * FROM messages WHERE message_id = ? AND run_id = ?",
                md.reply_to_message_id,
                md.run_id,
            )
            if request is None:
                raise unknown_request
            check_reply(conn, request, reply, now)
            # Only a replied message has a reply stored (check_reply accepted it as a
            # repeat of that one); a delivered one, the common case, needs no lookup.
            if request["status"] == DeliveryStatus.REPLIED.value:
                existing = fetch_one(
                    conn, "SELECT * FROM replies WHERE reply_to = ?", request["message_id"]
                )
                assert existing is not None  # a replied message has its reply
                return str(existing["message_id"])
            # A fresh id is 128 random bits: only an id the sender chose can be taken.
            reply_id = md.message_id or uuid.uuid4().hex
            if md.message_id and fetch_one(
                conn, "SELECT 1 FROM replies WHERE message_id = ?", reply_id
            ):
                raise MessageError(f"reply id {reply_id!r} is already taken")
            conn.execute(
                INSERT_REPLY,
                (
                    request["message_id"],
                    reply_id,
                    md.run_id,
                    md.src_node_id,
                    request["src_node_id"],
                    md.group_id,
                    md.message_type,
                    md.ttl,
                    md.created_at or now,
                    reply.content_hash,
                    None if reply.error is None else int(reply.error.code),
                    None if reply.error is None else reply.error.reason,
                    now,
                    reply.content,
                    md.traceparent or None,
                ),
            )
            conn.execute(
                "UPDATE messages SET status = ? WHERE message_id = ?",
                (DeliveryStatus.REPLIED.value, request["message_id"]),
            )
            return reply_id

        return work

    def get_replies(self, run_id: int, message_ids: Iterable[str]) -> list[StoredMessage]:
        if isinstance(message_ids, str):
            raise MessageError("message_ids must be an iterable of message ids, not one str")
        wanted = list(dict.fromkeys(message_ids))
        found: list[sqlite3.Row] = []
        with self._db.read() as conn:
            get_run_row(conn, run_id)
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                marks = ", ".join("?" * len(chunk))
                known = {
                    row[0]: row[1]
                    for row in conn.execute(
                        f"SELECT message_id, released_at FROM messages WHERE run_id = ? "
                        f"AND message_id IN ({marks})",
                        (run_id, *chunk),
                    )
                }
                for message_id in chunk:
                    if message_id not in known:
                        raise UnknownMessageError(f"run {run_id} has no message {message_id!r}")
                    if known[message_id] is not None:
                        raise MessageError(
                            f"message {message_id!r} of run {run_id} was released by its "
                            "ServerApp: its reply is no longer kept"
                        )
                found += conn.execute(
                    f"SELECT rowid, * FROM replies WHERE reply_to IN ({marks})", chunk
                ).fetchall()
        found.sort(key=lambda row: int(row["rowid"]))
        return [to_reply(row) for row in found]

    def replies_since(self, run_id: int, cursor: int = 0) -> tuple[list[StoredMessage], int]:
        if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
            raise ConfigError(f"a reply cursor is an int >= 0, got {cursor!r}")
        # The cursor is the replies' rowid: it only grows, since no reply is ever deleted.
        with self._db.read() as conn:
            get_run_row(conn, run_id)
            rows = conn.execute(
                "SELECT rowid, * FROM replies WHERE rowid > ? AND run_id = ? ORDER BY rowid",
                (min(cursor, SQLITE_INT_MAX), run_id),
            ).fetchall()
            end = conn.execute("SELECT coalesce(max(rowid), 0) FROM replies").fetchone()[0]
        return [to_reply(row) for row in rows], max(cursor, int(end))

    def reply_cursor(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM replies").fetchone()[0])

    def message_status(self, message_id: str) -> DeliveryStatus:
        with self._db.read() as conn:
            row = fetch_one(conn, "SELECT status FROM messages WHERE message_id = ?", message_id)
        if row is None:
            raise UnknownMessageError(f"no message {message_id!r}")
        return DeliveryStatus(row["status"])

    def abandon_run_messages(self, run_id: int, reason: str) -> list[str]:
        if not isinstance(reason, str):
            raise ConfigError(f"a reason must be a str, got {type(reason).__name__}")

        def work(conn: sqlite3.Connection) -> list[str]:
            get_run_row(conn, run_id)
            now = self._clock()
            rows = conn.execute(
                "SELECT * FROM messages WHERE run_id = ? AND status IN (?, ?) ORDER BY rowid",
                (run_id, *OPEN),
            ).fetchall()
            gone = Error(int(ErrorCode.MESSAGE_UNAVAILABLE), reason)
            answer_with_errors(conn, rows, DeliveryStatus.FAILED, lambda _: gone, now)
            return [str(row["message_id"]) for row in rows]

        return self._db.write(work)

    def expire_messages(self) -> list[str]:
        def work(conn: sqlite3.Connection) -> list[str]:
            now = self._clock()
            rows = conn.execute(
                "SELECT * FROM messages WHERE status IN (?, ?) AND expires_at <= ? ORDER BY rowid",
                (*OPEN, now),
            ).fetchall()
            answer_with_errors(conn, rows, DeliveryStatus.EXPIRED, expiry_error, now)
            return [str(row["message_id"]) for row in rows]

        return self._db.write(work)

    # -- events ------------------------------------------------------------------------

    def append_events(self, events: Iterable[Event]) -> list[int]:
        batch = []
        for event in events:
            if not isinstance(event, Event):
                raise ConfigError(f"expected an Event, got {type(event).__name__}")
            if not isinstance(event.kind, str) or not event.kind:
                raise ConfigError(f"an event's kind must be a non-empty str, got {event.kind!r}")
            data = dump_json(dict(event.data), f"data of event {event.kind!r}")
            if not fits_sqlite(event.run_id):
                raise unknown_run(event.run_id)
            if event.node_id is not None and not fits_sqlite(event.node_id):
                raise unknown_node(event.node_id)
            if not fits_sqlite(event.round):
                raise ConfigError(f"an event's round must be a 64-bit integer, got {event.round}")
            batch.append(
                (event.run_id, event.kind, event.round, event.node_id, data, float(event.time))
            )

        def work(conn: sqlite3.Connection) -> list[int]:
            for run_id in dict.fromkeys(row[0] for row in batch):
                if run_id != 0:
                    get_run_row(conn, run_id)
            seqs = []
            for row in batch:
                cursor = conn.execute(
                    "INSERT INTO events (run_id, kind, round, node_id, data, time) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
                seqs.append(int(cursor.lastrowid or 0))
            return seqs

        return self._db.write(work)

    def read_events(
        self, run_id: int, *, after: int = 0, limit: int | None = None, kind: str | None = None
    ) -> list[EventEntry]:
        sql_limit = check_limit(limit)
        with self._db.read() as conn:
            if run_id != 0:
                get_run_row(conn, run_id)
            rows = conn.execute(
                "SELECT * FROM events WHERE run_id = ? AND seq > ? "
                "AND (? IS NULL OR kind = ?) ORDER BY seq LIMIT ?",
                (run_id, _clamp(after), kind, kind, sql_limit),
            ).fetchall()
        return [to_event_entry(row) for row in rows]

    # -- what a run stored -------------------------------------------------------------

    def run_contents(
        self, run_id: int, *, released: bool = True
    ) -> Iterator[tuple[str, bytes | None]]:
        # Short reads, a page at a time: the caller parses between them, and a read holds
        # the connection other readers share.
        unreleased = "" if released else " AND released_at IS NULL"
        with self._db.read() as conn:
            get_run_row(conn, run_id)
            hashes = [
                str(row[0])
                for row in conn.execute(
                    f"SELECT DISTINCT content_hash FROM messages WHERE run_id = ?{unreleased}",
                    (run_id,),
                )
            ]
        seen = set(hashes)
        yield from ((content_hash, None) for content_hash in hashes)
        if released:
            query = (
                "SELECT rowid, content_hash, content FROM replies WHERE run_id = ? "
                "AND rowid > ? AND content_hash IS NOT NULL ORDER BY rowid LIMIT ?"
            )
        else:  # by the messages' partial index: what was released is not read at all
            query = (
                "SELECT m.rowid, r.content_hash, r.content FROM messages AS m "
                "JOIN replies AS r ON r.reply_to = m.message_id "
                "WHERE m.run_id = ? AND m.released_at IS NULL AND m.rowid > ? "
                "AND r.content_hash IS NOT NULL ORDER BY m.rowid LIMIT ?"
            )
        after = 0
        while True:
            with self._db.read() as conn:
                rows = conn.execute(query, (run_id, after, _CONTENT_PAGE)).fetchall()
            if not rows:
                return
            for rowid, content_hash, content in rows:
                after = int(rowid)
                if content_hash not in seen:
                    seen.add(content_hash)
                    yield str(content_hash), None if content is None else bytes(content)

    def release_messages(
        self, run_id: int, message_ids: Iterable[str]
    ) -> list[tuple[str, bytes | None]]:
        if isinstance(message_ids, str):
            raise MessageError("message_ids must be an iterable of message ids, not one str")
        wanted = list(dict.fromkeys(message_ids))

        def work(conn: sqlite3.Connection) -> list[tuple[str, bytes | None]]:
            get_run_row(conn, run_id)
            fresh: list[str] = []
            contents: dict[str, bytes | None] = {}
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                marks = ", ".join("?" * len(chunk))
                known = {
                    row[0]: row
                    for row in conn.execute(
                        f"SELECT message_id, content_hash, released_at FROM messages "
                        f"WHERE run_id = ? AND message_id IN ({marks})",
                        (run_id, *chunk),
                    )
                }
                for message_id in chunk:
                    row = known.get(message_id)
                    if row is None:
                        raise UnknownMessageError(f"run {run_id} has no message {message_id!r}")
                    if row["released_at"] is None:
                        fresh.append(message_id)
                        contents.setdefault(str(row["content_hash"]), None)
            now = self._clock()
            for start in range(0, len(fresh), CHUNK):
                chunk = fresh[start : start + CHUNK]
                marks = ", ".join("?" * len(chunk))
                for content_hash, content in conn.execute(
                    f"SELECT content_hash, content FROM replies WHERE reply_to IN ({marks}) "
                    "AND content_hash IS NOT NULL",
                    chunk,
                ):
                    if contents.get(content_hash) is None:
                        contents[content_hash] = None if content is None else bytes(content)
                conn.execute(
                    f"UPDATE messages SET released_at = ? WHERE message_id IN ({marks})",
                    (now, *chunk),
                )
            return list(contents.items())

        return self._db.write(work)

    def drop_released_contents(self, run_id: int, message_ids: Iterable[str]) -> int:
        if isinstance(message_ids, str):
            raise MessageError("message_ids must be an iterable of message ids, not one str")
        wanted = list(dict.fromkeys(message_ids))

        def work(conn: sqlite3.Connection) -> int:
            get_run_row(conn, run_id)
            dropped = 0
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                marks = ", ".join("?" * len(chunk))
                cursor = conn.execute(
                    f"UPDATE replies SET content = NULL WHERE content IS NOT NULL "
                    f"AND reply_to IN (SELECT message_id FROM messages WHERE run_id = ? "
                    f"AND released_at IS NOT NULL AND message_id IN ({marks}))",
                    (run_id, *chunk),
                )
                dropped += int(cursor.rowcount)
            return dropped

        return self._db.write(work)

    def clear_reply_contents(self, run_id: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            status = _run_status(get_run_row(conn, run_id)["status"])
            if not status.ended:
                raise RunStatusError(f"run {run_id} is {status.value}: it has not ended")
            cursor = conn.execute(
                "UPDATE replies SET content = NULL WHERE run_id = ? AND content IS NOT NULL",
                (run_id,),
            )
            return int(cursor.rowcount)

        return self._db.write(work)

    # -- checkpoints -------------------------------------------------------------------

    def save_checkpoint(self, run_id: int, round: int, blob_hash: str) -> Checkpoint:
        check_blob_hash(blob_hash)
        if (
            isinstance(round, bool)
            or not isinstance(round, int)
            or not 0 <= round <= SQLITE_INT_MAX
        ):
            raise ConfigError(
                f"a checkpoint's round must be an int from 0 to 2**63 - 1, got {round!r}"
            )

        def work(conn: sqlite3.Connection) -> Checkpoint:
            now = self._clock()
            get_run_row(conn, run_id)
            saved = fetch_one(conn, "SELECT round FROM checkpoints WHERE run_id = ?", run_id)
            if saved is not None and round < saved["round"]:
                raise ConfigError(
                    f"run {run_id} has a checkpoint of round {saved['round']}; "
                    f"round {round} is older"
                )
            conn.execute(
                "INSERT INTO checkpoints (run_id, round, blob_hash, saved_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                "round = excluded.round, blob_hash = excluded.blob_hash, "
                "saved_at = excluded.saved_at",
                (run_id, round, blob_hash, now),
            )
            return Checkpoint(run_id, round, blob_hash, now)

        return self._db.write(work)

    def load_checkpoint(self, run_id: int) -> Checkpoint | None:
        with self._db.read() as conn:
            get_run_row(conn, run_id)
            row = fetch_one(conn, "SELECT * FROM checkpoints WHERE run_id = ?", run_id)
        if row is None:
            return None
        return Checkpoint(
            int(row["run_id"]), int(row["round"]), str(row["blob_hash"]), float(row["saved_at"])
        )


def _clamp(value: object) -> object:
    """An int SQLite cannot hold, as the nearest one it can: the same rows compare past it."""
    if isinstance(value, int) and not fits_sqlite(value):
        return SQLITE_INT_MAX if value > 0 else SQLITE_INT_MIN
    return value


def _run_status(status: object) -> RunStatus:
    try:
        return RunStatus(status)
    except ValueError:
        raise ConfigError(
            f"unknown run status {status!r}; one of {', '.join(s.value for s in RunStatus)}"
        ) from None


R = TypeVar("R")


def _mark_delivered(conn: sqlite3.Connection, rows: Iterable[sqlite3.Row], now: float) -> None:
    """Mark the pending messages of ``rows`` delivered at ``now``, in one statement."""
    conn.executemany(
        "UPDATE messages SET status = ?, delivered_at = ? WHERE rowid = ?",
        [(DeliveryStatus.DELIVERED.value, now, row["rowid"]) for row in rows],
    )


def _results_or_errors(results: list[R | BaseException]) -> list[R | CorollaError]:
    """The results of a batch of works, each a value or the corolla error its work
    raised; any other exception (a bug) is raised."""
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, CorollaError):
            raise result
    return results  # type: ignore[return-value]
