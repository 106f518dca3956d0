"""SqliteLinkState beyond the conformance suite: durability, pragmas, lifecycle."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import corolla.state._checks
from corolla.core import ConfigError
from corolla.state import (
    DeliveryStatus,
    RunStatus,
    SqliteLinkState,
    StorageError,
)

from .doubles import FakeClock, digest, instruction


def _kill_self_after(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that SIGKILLs itself the moment it is done: no
    cleanup, no close, no atexit, exactly like a crash right after the call returned."""
    script = textwrap.dedent(code) + "\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_stored_reply_survives_a_sigkill_right_after_the_call(tmp_path: Path):
    path = tmp_path / "state.db"
    with SqliteLinkState(path) as state:
        run_id = state.create_run(digest(b"bundle")).run_id
        state.update_run_status(run_id, RunStatus.STARTING)
        state.update_run_status(run_id, RunStatus.RUNNING)
        node_id = state.register_node().node_id
        (message_id,) = state.store_messages([instruction(run_id, node_id)])
        state.fetch_messages(node_id)

    child = _kill_self_after(
        f"""
        from corolla.core import Metadata
        from corolla.state import SqliteLinkState, StoredMessage
        state = SqliteLinkState({str(path)!r})
        metadata = Metadata(
            run_id={run_id}, message_id="reply-1", src_node_id={node_id}, dst_node_id=0,
            reply_to_message_id={message_id!r}, group_id="1", message_type="train", ttl=60.0,
        )
        state.store_reply(StoredMessage(metadata, content_hash={digest(b"update")!r}))
        """
    )

    assert child.returncode == -signal.SIGKILL, child.stderr
    with SqliteLinkState(path) as state:
        (stored,) = state.get_replies(run_id, [message_id])
        assert (stored.metadata.message_id, stored.content_hash) == ("reply-1", digest(b"update"))
        assert state.message_status(message_id) is DeliveryStatus.REPLIED


def test_state_persists_across_reopening(tmp_path: Path, clock: FakeClock):
    path = tmp_path / "nested" / "dir" / "state.db"
    with SqliteLinkState(path, clock=clock) as state:
        identity = state.register_node(attributes={"site": "a"})
        run = state.create_run(digest(b"bundle"), {"rounds": 3})
        state.save_checkpoint(run.run_id, 2, digest(b"checkpoint"))

    with SqliteLinkState(path, clock=clock) as state:
        assert state.authenticate_node(identity.node_id, identity.token).attributes == {"site": "a"}
        assert state.get_run(run.run_id) == run
        checkpoint = state.load_checkpoint(run.run_id)
        assert checkpoint is not None and checkpoint.round == 2


def test_pragmas_for_durability(tmp_path: Path):
    # FULL is SQLite's NORMAL plus the state's own fsync of the log after each group of
    # commits (see _sqlite_commit); NORMAL leaves it out.
    with SqliteLinkState(tmp_path / "state.db") as state, state._db.read() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert state._db._sync_path == tmp_path / "state.db-wal"

    with SqliteLinkState(tmp_path / "state.db", synchronous="NORMAL") as state:
        assert state._db._sync_path is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_a_write_returns_after_the_log_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with SqliteLinkState(tmp_path / "state.db") as state:
        synced: list[str] = []
        real_fsync = os.fsync
        monkeypatch.setattr(
            os,
            "fsync",
            lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd),
        )

        state.register_node()

        assert synced == [str(tmp_path / "state.db-wal")]
        assert state.reply_cursor() == 0 and len(synced) == 1  # reads fsync nothing


def test_synchronous_must_be_full_or_normal(tmp_path: Path):
    with pytest.raises(ConfigError, match="synchronous"):
        SqliteLinkState(tmp_path / "state.db", synchronous="OFF")  # type: ignore[arg-type]


def test_two_stores_on_one_file_see_each_others_writes(tmp_path: Path):
    with SqliteLinkState(tmp_path / "s.db") as a, SqliteLinkState(tmp_path / "s.db") as b:
        run = a.create_run(digest(b"bundle"))

        assert b.get_run(run.run_id) == run


def test_a_closed_store_raises_and_closing_twice_is_fine(tmp_path: Path):
    state = SqliteLinkState(tmp_path / "state.db")
    state.close()
    state.close()

    with pytest.raises(StorageError, match="closed"):
        state.list_runs()


def test_a_file_that_is_no_database_is_a_storage_error(tmp_path: Path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an sqlite database, just some text" * 100)

    with pytest.raises(StorageError, match="cannot open"):
        SqliteLinkState(path)


def test_sqlite_errors_are_translated_with_their_cause(tmp_path: Path):
    with SqliteLinkState(tmp_path / "state.db") as state:
        state._db.write(lambda conn: conn.execute("DROP TABLE runs"))

        with pytest.raises(StorageError) as read:
            state.list_runs()
        with pytest.raises(StorageError) as write:
            state.create_run(digest(b"bundle"))

    assert isinstance(read.value.__cause__, sqlite3.Error)
    assert isinstance(write.value.__cause__, sqlite3.Error)


def test_a_taken_random_id_is_drawn_again(monkeypatch: pytest.MonkeyPatch):
    draws = iter([0, 5, 5, 9])  # 0 is the ServerApp's id, then a collision
    monkeypatch.setattr(corolla.state._checks.secrets, "randbits", lambda bits: next(draws))
    with SqliteLinkState(":memory:") as state:
        assert state.register_node().node_id == 5
        assert state.register_node().node_id == 9


def test_a_broken_random_source_is_reported(monkeypatch: pytest.MonkeyPatch):
    with SqliteLinkState(":memory:") as state:
        state.register_node()
        taken = state.list_nodes()[0].node_id
        monkeypatch.setattr(secrets, "randbits", lambda bits: taken)

        with pytest.raises(StorageError, match="random"):
            state.register_node()
