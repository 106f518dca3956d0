"""BackgroundCheckpointer, and the SqliteLinkState that runs one for a file database."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from corolla.state import SqliteLinkState
from corolla.state._sqlite import PAGE_SIZE
from corolla.state._sqlite_checkpoint import BACKSTOP_BYTES, BackgroundCheckpointer

from .doubles import digest

WAIT_S = 5.0


def test_a_file_state_checkpoints_its_log_on_its_own_connection(tmp_path: Path) -> None:
    with SqliteLinkState(tmp_path / "state.db") as state:
        checkpointer = state._checkpointer
        assert isinstance(checkpointer, BackgroundCheckpointer)
        for _ in range(3):
            state.register_node()

        result = checkpointer.checkpoint()

        assert result is not None
        busy, log_frames, checkpointed = result
        # The writer holds no transaction open, so a passive checkpoint copies the
        # whole log, whether or not the thread already did.
        assert busy == 0
        assert log_frames > 0
        assert checkpointed == log_frames


def test_the_writers_commits_checkpoint_only_past_the_backstop(tmp_path: Path) -> None:
    with SqliteLinkState(tmp_path / "state.db") as state, state._db.read() as conn:
        pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]

    assert page_size == PAGE_SIZE
    assert pages * page_size == BACKSTOP_BYTES
    assert pages > 1000  # SQLite's default, which the thread takes over


def test_a_database_made_with_other_pages_keeps_them_and_its_backstop_in_bytes(
    tmp_path: Path,
) -> None:
    # A state written before new databases took 16 KiB pages.
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA journal_mode = WAL")
    conn.close()

    with SqliteLinkState(path) as state:
        node = state.register_node()
        with state._db.read() as conn:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]

    assert node.node_id > 0
    assert page_size == 4096
    assert pages * 4096 == BACKSTOP_BYTES


def test_an_in_memory_state_has_no_checkpointer() -> None:
    with SqliteLinkState(":memory:") as state:
        assert state._checkpointer is None
        state.register_node()  # and works without one


def test_closing_stops_the_checkpointer_and_closing_twice_is_fine(tmp_path: Path) -> None:
    state = SqliteLinkState(tmp_path / "state.db")
    checkpointer = state._checkpointer
    assert checkpointer is not None
    thread = checkpointer._thread
    assert thread.is_alive()

    state.close()
    state.close()

    assert not thread.is_alive()


def test_a_checkpoint_that_fails_is_none_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SqliteLinkState(tmp_path / "state.db"):
        pass
    checkpointer = BackgroundCheckpointer(tmp_path / "state.db")
    checkpointer.close()

    with caplog.at_level(logging.WARNING, logger="corolla.state"):
        assert checkpointer.checkpoint() is None

    assert "checkpoint of the state database failed" in caplog.text
    assert checkpointer.checkpoints == 0


def test_the_thread_checkpoints_every_interval(tmp_path: Path) -> None:
    # Arrange: a WAL database whose commits never checkpoint by themselves
    path = tmp_path / "plain.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (x)")
    writer.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    checkpointer = BackgroundCheckpointer(path, interval_s=0.01)
    try:
        # Act: wait, a few seconds at most, for the thread's first checkpoints
        deadline = time.monotonic() + WAIT_S
        while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        result = checkpointer.checkpoint()
    finally:
        checkpointer.close()
        writer.close()

    # Assert: the thread ran, and the log was copied into the database
    assert checkpointer.checkpoints >= 3
    assert result is not None and result[0] == 0 and result[2] == result[1] > 0


def test_what_was_written_is_read_by_a_new_state_after_closing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteLinkState(path) as state:
        runs = [state.create_run(digest(str(i).encode()), {"i": i}) for i in range(20)]
        checkpointer = state._checkpointer
        assert checkpointer is not None and checkpointer.checkpoint() is not None
        later = state.create_run(digest(b"after the checkpoint"))  # in the log only

    with SqliteLinkState(path) as reopened:
        assert reopened.list_runs() == [*runs, later]
