"""Read-only views of a link's SQLite state, for pages that watch a running link.

A :class:`SqliteStateViews` opens its own read-only connections to the state database
(one per thread that reads), so its reads never take the lock of the link's
:class:`SqliteLinkState` nor wait for its commits: in WAL mode a reader sees the last
committed transaction while the link writes the next one. Every query is bounded: pages
of runs and nodes (``LIMIT``/``OFFSET``), the tail of a run's events, and a run's
node-by-round participation aggregated in SQL into at most ``max_rows`` bands of nodes,
so a run of a thousand nodes and a hundred rounds costs one grouped query, not a hundred
thousand rows.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from corolla.core import ConfigError

from ._errors import StorageError, UnknownRunError
from ._sqlite_rows import to_event_entry, to_node_info, to_run_info
from ._types import EventEntry, NodeInfo, RunInfo, RunStatus

__all__ = [
    "NodeBand",
    "NodeSummary",
    "Participation",
    "ReplyFailure",
    "RunSummary",
    "SqliteStateViews",
    "StateTotals",
]

#: What a run page can be sorted by, and the SQL of each.
RUN_SORTS: Mapping[str, str] = {
    "run_id": "r.run_id",
    "status": "r.status",
    "app": "app",
    "by": "submitted_by",
    "created": "r.created_at",
    "duration": "coalesce(r.ended_at, :now) - coalesce(r.started_at, :now)",
}

#: Outcomes of a message in a participation cell: replied, answered with an error (by the
#: node, or by the link: expired, node offline, run ended), no reply yet.
OUTCOMES = ("ok", "failed", "waiting")

_PHASES = {"train": "train%", "evaluate": "evaluate%", "all": "%"}


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """A run with what its events say: the app, who submitted it, and its last round."""

    run: RunInfo
    app: str
    submitted_by: str
    #: The number of the last round that ended (0: none yet).
    rounds_done: int
    #: The rounds the run means to do, from its latest ``round.start`` (None before one).
    num_rounds: int | None
    #: The data of the last ``round.end`` event (its metrics by phase), empty before one.
    last_round: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class NodeBand:
    """Consecutive nodes of a run (by id) shown as one row of its participation map."""

    first_node: int
    last_node: int
    nodes: int


@dataclasses.dataclass(frozen=True)
class Participation:
    """A run's messages by band of nodes and round: ``cells[band][i]`` counts the
    :data:`OUTCOMES` of the messages of ``rounds[i]`` sent to the nodes of ``bands[band]``."""

    bands: list[NodeBand]
    rounds: list[str]
    cells: list[list[tuple[int, int, int]]]


@dataclasses.dataclass(frozen=True)
class ReplyFailure:
    """An error reply to one of a run's messages."""

    node_id: int
    round: str
    message_type: str
    code: int
    reason: str


@dataclasses.dataclass(frozen=True)
class NodeSummary:
    """A node with the runs it was sent messages of and its error replies."""

    node: NodeInfo
    runs_served: int
    errors: int


@dataclasses.dataclass(frozen=True)
class StateTotals:
    """Figures that change whenever anything a page shows changes."""

    last_event: int
    last_run_change: float
    nodes_online: int
    nodes: int
    runs: Mapping[str, int]


class SqliteStateViews:
    """Read-only, bounded queries over the state database at ``path`` (see the module).

    Thread-safe: each thread reads through a connection of its own. :meth:`close` closes
    them all.

    Raises
    ------
    StorageError
        If the database does not exist.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path).resolve()
        if not self._path.is_file():
            raise StorageError(f"no state database at {self._path}: start the link first")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    def close(self) -> None:
        """Close every connection; later reads raise :class:`StorageError`. Idempotent."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        with self._lock:
            if self._closed:
                raise StorageError("the state views are closed")
            if conn is None or conn not in self._connections:
                try:
                    conn = sqlite3.connect(
                        f"{self._path.as_uri()}?mode=ro",
                        uri=True,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                except sqlite3.Error as exc:
                    raise StorageError(f"cannot read {self._path}: {exc}") from exc
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA query_only = ON")
                self._local.conn = conn
                self._connections.append(conn)
        try:
            conn.execute("BEGIN")  # one snapshot for every statement of the read
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"reading {self._path} failed: {exc}") from exc

    # -- runs --------------------------------------------------------------------------

    def runs(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        sort: str = "created",
        descending: bool = True,
        status: RunStatus | None = None,
        text: str = "",
        now: float = 0.0,
    ) -> tuple[list[RunSummary], int]:
        """A page of runs and how many match: sorted by one of :data:`RUN_SORTS`, only
        those with ``status``, and those whose app or submitter contains ``text``.
        ``now`` is the end of a running run's duration, for the sort by duration.

        Raises
        ------
        ConfigError
            If ``sort`` is unknown, or ``limit`` or ``offset`` is out of range.
        """
        if sort not in RUN_SORTS:
            raise ConfigError(f"cannot sort runs by {sort!r}; use one of {sorted(RUN_SORTS)}")
        _check_page(limit, offset)
        direction = "DESC" if descending else "ASC"
        # The submission is a run's first event: found by the (run_id, seq) index.
        query = f"""
            WITH listed AS (
                SELECT r.*,
                    coalesce(json_extract(s.data, '$.app'), '') AS app,
                    coalesce(json_extract(s.data, '$.by'), '') AS submitted_by
                FROM runs r LEFT JOIN events s ON s.seq = (
                    SELECT min(seq) FROM events WHERE run_id = r.run_id)
                    AND s.kind = 'run.submit'
            )
            SELECT r.*, count(*) OVER () AS total FROM listed r
            WHERE (:status IS NULL OR r.status = :status)
              AND (:text = '' OR instr(lower(r.app || ' ' || r.submitted_by), lower(:text)) > 0)
            ORDER BY {RUN_SORTS[sort]} {direction}, r.run_id {direction}
            LIMIT :limit OFFSET :offset
        """
        params = {
            "status": None if status is None else status.value,
            "text": text.strip(),
            "limit": limit,
            "offset": offset,
            "now": now,
        }
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
            summaries = [self._summary(conn, row) for row in rows]
        return summaries, int(rows[0]["total"]) if rows else 0

    def run(self, run_id: int) -> RunSummary:
        """One run with what its events say.

        Raises
        ------
        UnknownRunError
            If there is no such run.
        """
        with self._read() as conn:
            row = conn.execute(
                """
                SELECT r.*, coalesce(json_extract(s.data, '$.app'), '') AS app,
                    coalesce(json_extract(s.data, '$.by'), '') AS submitted_by
                FROM runs r LEFT JOIN events s ON s.seq = (
                    SELECT min(seq) FROM events WHERE run_id = r.run_id)
                    AND s.kind = 'run.submit'
                WHERE r.run_id = ?
                """,
                (run_id,),
            ).fetchone()
            if row is None:
                raise UnknownRunError(f"no run {run_id}")
            return self._summary(conn, row)

    def _summary(self, conn: sqlite3.Connection, row: sqlite3.Row) -> RunSummary:
        run_id = int(row["run_id"])
        # The last of each kind: a backward walk of the run's index, a few events long.
        last_end = _last_event(conn, run_id, "round.end")
        last_start = _last_event(conn, run_id, "round.start")
        num_rounds = None
        if last_start is not None:
            value = json.loads(last_start["data"]).get("num_rounds")
            num_rounds = int(value) if isinstance(value, int) else None
        return RunSummary(
            run=to_run_info(row),
            app=str(row["app"]),
            submitted_by=str(row["submitted_by"]),
            rounds_done=0 if last_end is None else int(last_end["round"] or 0),
            num_rounds=num_rounds,
            last_round={} if last_end is None else json.loads(last_end["data"]),
        )

    def rounds(self, run_id: int) -> list[dict[str, Any]]:
        """The data of every ``round.end`` event of a run, in order: the rounds of its
        history (``history.json``'s ``rounds``).

        Raises
        ------
        UnknownRunError
            If there is no such run.
        """
        with self._read() as conn:
            _check_run(conn, run_id)
            rows = conn.execute(
                "SELECT data FROM events WHERE run_id = ? AND kind = 'round.end' ORDER BY seq",
                (run_id,),
            ).fetchall()
        by_round: dict[Any, dict[str, Any]] = {}
        for row in rows:  # a resumed run may end a round twice: the last one counts
            data = json.loads(row["data"])
            by_round[data.get("round")] = data
        return list(by_round.values())

    def events(
        self, run_id: int, *, after: int = 0, before: int | None = None, limit: int = 200
    ) -> list[EventEntry]:
        """Up to ``limit`` events of a run after sequence ``after``: the first ones, or
        with ``before`` the last ones before it, in order either way.

        Raises
        ------
        UnknownRunError
            If ``run_id`` is neither 0 nor a run.
        ConfigError
            If ``limit`` is out of range.
        """
        _check_page(limit, 0)
        with self._read() as conn:
            if run_id != 0:
                _check_run(conn, run_id)
            if before is None:
                rows = conn.execute(
                    "SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (run_id, after, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM events WHERE run_id = ? AND seq > ? AND seq < ? "
                    "ORDER BY seq DESC LIMIT ?",
                    (run_id, after, before, limit),
                ).fetchall()[::-1]
        return [to_event_entry(row) for row in rows]

    def last_event(self, run_id: int, kind: str) -> EventEntry | None:
        """The last event of ``kind`` of a run, or None.

        Raises
        ------
        UnknownRunError
            If there is no such run.
        """
        with self._read() as conn:
            _check_run(conn, run_id)
            row = _last_event(conn, run_id, kind)
        return None if row is None else to_event_entry(row)

    # -- participation -----------------------------------------------------------------

    def participation(
        self, run_id: int, *, phase: str = "all", max_rows: int = 100
    ) -> Participation:
        """Which nodes a run sent messages to in each round and how they answered, in at
        most ``max_rows`` bands of nodes (one node each when the run had that few).

        ``phase`` is ``train``, ``evaluate`` or ``all`` (every message type).

        Raises
        ------
        UnknownRunError
            If there is no such run.
        ConfigError
            If ``phase`` or ``max_rows`` is invalid.
        """
        if phase not in _PHASES:
            raise ConfigError(f"unknown phase {phase!r}; use one of {sorted(_PHASES)}")
        if not 1 <= max_rows <= 1000:
            raise ConfigError(f"max_rows must be from 1 to 1000, got {max_rows}")
        with self._read() as conn:
            _check_run(conn, run_id)
            # The run's nodes, by id: a search of the messages' (dst_node_id) index per
            # registered node, not a scan of the run's messages.
            nodes = [
                int(row[0])
                for row in conn.execute(
                    "SELECT node_id FROM nodes n WHERE EXISTS (SELECT 1 FROM messages m "
                    "WHERE m.dst_node_id = n.node_id AND m.run_id = ?) ORDER BY node_id",
                    (run_id,),
                )
            ]
            if not nodes:
                return Participation([], [], [])
            count = len(nodes)
            bands = min(max_rows, count)
            # Node of rank i is in band i * bands // count: band b begins at rank edges[b].
            edges = [-(-b * count // bands) for b in range(bands + 1)]
            firsts = [nodes[edges[b]] for b in range(bands)]
            band_of_dst, dst_params = _band_expression("dst_node_id", firsts)
            band_of_src, src_params = _band_expression("src_node_id", firsts)
            # One pass over the run's messages, grouped straight into bands and rounds; a
            # message not pending or delivered has its reply, an error or not.
            sent = conn.execute(
                f"SELECT {band_of_dst} AS band, group_id, count(*), "
                "sum(status IN ('pending', 'delivered')) FROM messages "
                "WHERE run_id = ? AND message_type LIKE ? GROUP BY band, group_id",
                [*dst_params, run_id, _PHASES[phase]],
            ).fetchall()
            failed = {
                (int(row[0]), str(row[1])): int(row[2])
                for row in conn.execute(
                    f"SELECT {band_of_src} AS band, group_id, count(*) FROM replies "
                    "WHERE run_id = ? AND error_code IS NOT NULL AND message_type LIKE ? "
                    "GROUP BY band, group_id",
                    [*src_params, run_id, _PHASES[phase]],
                )
            }
        rounds = sorted({str(row[1]) for row in sent}, key=_round_order)
        column = {name: i for i, name in enumerate(rounds)}
        cells = [[(0, 0, 0)] * len(rounds) for _ in range(bands)]
        for band, group, messages, waiting in sent:
            errors = failed.get((int(band), str(group)), 0)
            cells[int(band)][column[str(group)]] = (
                int(messages) - int(waiting) - errors,
                errors,
                int(waiting),
            )
        return Participation(
            bands=[
                NodeBand(nodes[edges[b]], nodes[edges[b + 1] - 1], edges[b + 1] - edges[b])
                for b in range(bands)
            ],
            rounds=rounds,
            cells=cells,
        )

    def failures(
        self,
        run_id: int,
        *,
        round: str | None = None,
        first_node: int = 0,
        last_node: int | None = None,
        limit: int = 50,
    ) -> list[ReplyFailure]:
        """Up to ``limit`` error replies to a run's messages, of one round (its group id)
        and of nodes ``first_node`` to ``last_node`` where given, in the order stored.

        Raises
        ------
        UnknownRunError
            If there is no such run.
        ConfigError
            If ``limit`` is out of range.
        """
        _check_page(limit, 0)
        with self._read() as conn:
            _check_run(conn, run_id)
            rows = conn.execute(
                """
                SELECT m.dst_node_id, m.group_id, m.message_type, r.error_code,
                    r.error_reason
                FROM messages m JOIN replies r ON r.reply_to = m.message_id
                WHERE m.run_id = :run AND r.error_code IS NOT NULL
                  AND (:round IS NULL OR m.group_id = :round)
                  AND m.dst_node_id >= :first
                  AND (:last IS NULL OR m.dst_node_id <= :last)
                ORDER BY r.stored_at LIMIT :limit
                """,
                {
                    "run": run_id,
                    "round": round,
                    "first": first_node,
                    "last": last_node,
                    "limit": limit,
                },
            ).fetchall()
        return [
            ReplyFailure(int(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4] or "")) for r in rows
        ]

    # -- nodes -------------------------------------------------------------------------

    def nodes(
        self, *, limit: int = 100, offset: int = 0, online: bool | None = None
    ) -> tuple[list[NodeSummary], int]:
        """A page of nodes by id, optionally only those online (or offline), and how many
        match.

        Raises
        ------
        ConfigError
            If ``limit`` or ``offset`` is out of range.
        """
        _check_page(limit, offset)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT *, count(*) OVER () AS total FROM nodes "
                "WHERE (:online IS NULL OR online = :online) ORDER BY node_id "
                "LIMIT :limit OFFSET :offset",
                {"online": online, "limit": limit, "offset": offset},
            ).fetchall()
            ids = [int(row["node_id"]) for row in rows]
            served: dict[int, tuple[int, int]] = {}
            if ids:
                marks = ",".join("?" * len(ids))
                for row in conn.execute(
                    f"""
                    SELECT m.dst_node_id, count(DISTINCT m.run_id),
                        sum(r.error_code IS NOT NULL)
                    FROM messages m LEFT JOIN replies r ON r.reply_to = m.message_id
                    WHERE m.dst_node_id IN ({marks}) GROUP BY m.dst_node_id
                    """,
                    ids,
                ):
                    served[int(row[0])] = (int(row[1]), int(row[2] or 0))
        summaries = [
            NodeSummary(to_node_info(row), *served.get(int(row["node_id"]), (0, 0))) for row in rows
        ]
        return summaries, int(rows[0]["total"]) if rows else 0

    # -- the whole link ----------------------------------------------------------------

    def totals(self) -> StateTotals:
        """The figures of :class:`StateTotals`, in one snapshot."""
        with self._read() as conn:
            last_event = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            changed = conn.execute("SELECT coalesce(max(updated_at), 0) FROM runs").fetchone()[0]
            online, count = conn.execute(
                "SELECT coalesce(sum(online), 0), count(*) FROM nodes"
            ).fetchone()
            runs = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status"))
        return StateTotals(int(last_event), float(changed), int(online), int(count), runs)


def _check_page(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ConfigError(f"a page holds from 1 to 1000 items, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"a page's offset is an int >= 0, got {offset!r}")


def _check_run(conn: sqlite3.Connection, run_id: int) -> None:
    if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
        raise UnknownRunError(f"no run {run_id}")


def _last_event(conn: sqlite3.Connection, run_id: int, kind: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM events WHERE run_id = ? AND kind = ? ORDER BY seq DESC LIMIT 1",
        (run_id, kind),
    ).fetchone()
    return row


def _band_expression(column: str, firsts: list[int]) -> tuple[str, list[int]]:
    """SQL of the band of node ``column`` (the last band whose first node is not above
    it), as a binary search of nested CASEs, and its parameters in order."""

    def search(low: int, high: int) -> tuple[str, list[int]]:
        if high - low == 1:
            return str(low), []
        middle = (low + high) // 2
        below, below_params = search(low, middle)
        above, above_params = search(middle, high)
        sql = f"CASE WHEN {column} < ? THEN {below} ELSE {above} END"
        return sql, [firsts[middle], *below_params, *above_params]

    return search(0, len(firsts))


def _round_order(group: str) -> tuple[int, int | str]:
    return (0, int(group)) if group.lstrip("-").isdigit() else (1, group)
