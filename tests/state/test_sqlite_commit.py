"""Group commit: concurrent writes share commits, and each fails or succeeds on its own."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from corolla.state import RunStatus, SqliteLinkState, StorageError
from corolla.state._sqlite_commit import GroupCommit

from .doubles import digest, instruction

THREADS = 8


@pytest.fixture
def db(tmp_path: Path) -> Iterator[GroupCommit]:
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE t (x INTEGER UNIQUE, "
        "p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    committer = GroupCommit(conn)
    yield committer
    committer.close()


def _values(db: GroupCommit) -> list[int]:
    with db.read() as conn:
        return [int(row[0]) for row in conn.execute("SELECT x FROM t ORDER BY x")]


def _behind_a_held_write(
    db: GroupCommit,
    works: Mapping[str, Callable[[sqlite3.Connection], object]],
    held: Callable[[sqlite3.Connection], object] = lambda conn: None,
) -> dict[str, object]:
    """Run ``works``, each on a thread of its own, while the write ``held`` keeps the
    store's lock, so that all of them are queued for the next batch; then let it go.
    What each write returned or raised, by name (``"held"`` for the holding one)."""
    entered, release = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def holding(conn: sqlite3.Connection) -> object:
        result = held(conn)
        entered.set()
        assert release.wait(10)
        return result

    def attempt(name: str, work: Callable[[sqlite3.Connection], object]) -> None:
        try:
            outcomes[name] = db.write(work)
        except Exception as exc:
            outcomes[name] = exc

    holder = threading.Thread(target=attempt, args=("held", holding))
    holder.start()
    assert entered.wait(10)
    threads = [threading.Thread(target=attempt, args=item) for item in works.items()]
    for thread in threads:
        thread.start()
    while len(db._queue) < len(threads):  # every write is waiting behind the held one
        threading.Event().wait(0.001)
    release.set()
    for thread in [holder, *threads]:
        thread.join(10)
    return outcomes


def test_a_write_returns_its_result_once_committed(db: GroupCommit):
    rowid = db.write(lambda conn: conn.execute("INSERT INTO t (x) VALUES (1)").lastrowid)

    assert rowid == 1
    assert _values(db) == [1] and db.commits == 1


def test_writes_queued_while_a_batch_commits_share_the_next_commit(db: GroupCommit):
    _behind_a_held_write(
        db,
        {
            f"insert {i}": lambda conn, i=i: conn.execute(f"INSERT INTO t VALUES ({i}, NULL)")
            for i in range(1, THREADS + 1)
        },
        held=lambda conn: conn.execute("INSERT INTO t (x) VALUES (0)"),
    )

    assert _values(db) == list(range(THREADS + 1))
    assert db.commits == 2


def test_a_failing_write_is_undone_alone(db: GroupCommit):
    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (x) VALUES (2)")
        raise ValueError("refused")

    outcomes = _behind_a_held_write(
        db,
        {
            "bad": failing,
            "good": lambda c: c.execute("INSERT INTO t (x) VALUES (3)"),
            "dup": lambda c: c.execute("INSERT INTO t (x) VALUES (3)"),
        },
    )

    assert isinstance(outcomes["bad"], ValueError)
    assert isinstance(outcomes["dup"], StorageError)
    assert isinstance(outcomes["dup"].__cause__, sqlite3.IntegrityError)
    assert _values(db) == [3]


def test_a_failed_commit_fails_every_write_of_the_batch(db: GroupCommit):
    outcomes = _behind_a_held_write(
        db,
        {  # a deferred foreign key fails at COMMIT, not at the INSERT
            "orphan": lambda c: c.execute("INSERT INTO t VALUES (1, 99)"),
            "fine": lambda c: c.execute("INSERT INTO t (x) VALUES (2)"),
        },
    )

    assert outcomes["held"] is None
    assert isinstance(outcomes["orphan"], StorageError)
    assert isinstance(outcomes["fine"], StorageError)
    assert _values(db) == []
    db.write(lambda c: c.execute("INSERT INTO t (x) VALUES (5)"))  # the store still works
    assert _values(db) == [5]


def test_write_many_commits_a_batch_once_and_returns_each_result_in_order(db: GroupCommit):
    def insert(x: int) -> Callable[[sqlite3.Connection], str]:
        def work(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
            return f"stored {x}"

        return work

    results = db.write_many([insert(3), insert(1), insert(2)])

    assert results == ["stored 3", "stored 1", "stored 2"]
    assert _values(db) == [1, 2, 3]
    assert db.commits == 1


def test_write_many_undoes_a_failing_work_alone_and_returns_its_error(db: GroupCommit):
    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (x) VALUES (2)")
        raise ValueError("refused")

    results = db.write_many(
        [
            lambda c: c.execute("INSERT INTO t (x) VALUES (1)").rowcount,
            failing,
            lambda c: c.execute("INSERT INTO t (x) VALUES (1)").rowcount,  # x is unique
            lambda c: c.execute("INSERT INTO t (x) VALUES (3)").rowcount,
        ]
    )

    ok, refused, duplicate, later = results
    assert (ok, later) == (1, 1)
    assert isinstance(refused, ValueError) and str(refused) == "refused"
    assert isinstance(duplicate, StorageError)
    assert isinstance(duplicate.__cause__, sqlite3.IntegrityError)
    assert _values(db) == [1, 3]
    assert db.commits == 1


def test_write_many_of_nothing_commits_nothing(db: GroupCommit):
    assert db.write_many([]) == []
    assert db.commits == 0


def test_write_many_syncs_the_log_once_for_the_batch(tmp_path: Path):
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (x INTEGER UNIQUE)")
    db = GroupCommit(conn, tmp_path / "s.db-wal")

    db.write_many([lambda c, v=v: c.execute("INSERT INTO t VALUES (?)", (v,)) for v in range(5)])

    assert (db.commits, db.syncs) == (1, 1)
    assert _values(db) == list(range(5))
    db.close()


def test_concurrent_writers_share_the_fsyncs_of_the_log(tmp_path: Path):
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (x INTEGER)")
    db = GroupCommit(conn, tmp_path / "s.db-wal")

    def write(i: int) -> None:
        for k in range(25):
            db.write(lambda c, v=i * 100 + k: c.execute("INSERT INTO t VALUES (?)", (v,)))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(_values(db)) == THREADS * 25
    assert 1 <= db.syncs <= db.commits <= THREADS * 25
    db.close()


def test_a_closed_store_refuses_reads_and_writes(db: GroupCommit):
    db.close()
    db.close()

    with pytest.raises(StorageError, match="closed"):
        db.write(lambda conn: None)
    with pytest.raises(StorageError, match="closed"), db.read():
        pass


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_replies_acknowledged_by_concurrent_threads_survive_a_sigkill(tmp_path: Path):
    path = tmp_path / "state.db"
    with SqliteLinkState(path) as state:
        run_id = state.create_run(digest(b"bundle")).run_id
        state.update_run_status(run_id, RunStatus.STARTING)
        state.update_run_status(run_id, RunStatus.RUNNING)
        node_id = state.register_node().node_id
        message_ids = state.store_messages([instruction(run_id, node_id)] * 200)
        state.fetch_messages(node_id)
    # Threads reply concurrently and print each reply the state acknowledged; the process
    # kills itself while others are still in flight.
    script = textwrap.dedent(
        f"""
        import os, signal, sys, threading
        from corolla.core import Metadata
        from corolla.state import SqliteLinkState, StoredMessage
        state = SqliteLinkState({str(path)!r})
        ids = {message_ids!r}
        acknowledged = []
        def reply(part):
            for message_id in ids[part::8]:
                metadata = Metadata(
                    run_id={run_id}, message_id="r-" + message_id, src_node_id={node_id},
                    dst_node_id=0, reply_to_message_id=message_id, group_id="1",
                    message_type="train", ttl=60.0,
                )
                state.store_reply(StoredMessage(metadata, content_hash={digest(b"u")!r}))
                os.write(1, (message_id + "\\n").encode())  # one atomic write
                if len(acknowledged) == 120:
                    os.kill(os.getpid(), signal.SIGKILL)
                acknowledged.append(message_id)
        threads = [threading.Thread(target=reply, args=(i,)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )

    assert child.returncode == -signal.SIGKILL, child.stderr
    acknowledged = child.stdout.split()
    assert len(acknowledged) >= 120
    with SqliteLinkState(path) as state:
        stored = {r.metadata.reply_to_message_id for r in state.get_replies(run_id, message_ids)}
    assert set(acknowledged) <= stored
