"""The state database's file: refused at start when empty or damaged, created whole, and
readable by its owner only."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.core import ConfigError
from corolla.state import (
    CorruptStateError,
    DeliveryStatus,
    RunStatus,
    SqliteLinkState,
    StorageError,
    _sqlite_file,
)

from .doubles import digest, instruction

PAGE = 4096
#: SQLite's b-tree page type of a table's leaf page.
TABLE_LEAF = 0x0D


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The loosest umask: whatever the state creates is as open as its own code asks."""
    old = os.umask(0)
    yield
    os.umask(old)


def _written_state(path: Path, messages: int = 400) -> list[str]:
    """A closed state database holding ``messages`` messages (their ids returned), with
    its write-ahead log checkpointed into the file."""
    with SqliteLinkState(path) as state:
        run_id = state.create_run(digest(b"bundle")).run_id
        state.update_run_status(run_id, RunStatus.STARTING)
        state.update_run_status(run_id, RunStatus.RUNNING)
        nodes = [state.register_node().node_id for _ in range(20)]
        ids = state.store_messages(
            instruction(run_id, nodes[i % len(nodes)], group_id=str(i)) for i in range(messages)
        )
    assert not Path(f"{path}-wal").exists()  # all of it is in the file
    return ids


def _full_table_leaves(path: Path) -> list[int]:
    """Numbers (from 0) of the pages that are tables' leaves with little free space."""
    data = path.read_bytes()
    leaves = []
    for number in range(1, len(data) // PAGE):  # page 0 starts with the file's header
        page = data[number * PAGE : (number + 1) * PAGE]
        content_start = int.from_bytes(page[5:7], "big")
        if page[0] == TABLE_LEAF and 0 < content_start < PAGE // 4:
            leaves.append(number)
    return leaves


def _assert_refused_with_what_to_do(error: CorruptStateError, path: Path) -> None:
    message = str(error)
    assert str(path) in message
    assert "restore it from a backup" in message
    assert "move it aside" in message
    assert "\n" not in message


def test_an_empty_database_file_is_refused_and_left_as_it_is(tmp_path: Path):
    path = tmp_path / "state.db"
    path.touch()

    with pytest.raises(CorruptStateError, match=r"empty \(0 bytes\)") as refused:
        SqliteLinkState(path)

    _assert_refused_with_what_to_do(refused.value, path)
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_a_file_that_is_no_sqlite_database_is_refused(tmp_path: Path):
    path = tmp_path / "state.db"
    path.write_bytes(b"runs and nodes, or so it claims\n" * 200)

    with pytest.raises(CorruptStateError, match="not an SQLite database") as refused:
        SqliteLinkState(path)

    _assert_refused_with_what_to_do(refused.value, path)


@pytest.mark.parametrize("check", ["quick", "full"])
def test_a_page_overwritten_with_garbage_is_found_at_open(tmp_path: Path, check):
    # Arrange: the middle of a full leaf page of a table, overwritten
    path = tmp_path / "state.db"
    _written_state(path)
    leaves = _full_table_leaves(path)
    assert leaves
    with path.open("r+b") as file:
        file.seek(leaves[len(leaves) // 2] * PAGE + PAGE // 4)
        file.write(os.urandom(PAGE // 2))

    # Act
    with pytest.raises(CorruptStateError, match="damaged") as refused:
        SqliteLinkState(path, check=check)

    # Assert
    _assert_refused_with_what_to_do(refused.value, path)


def test_the_full_check_finds_a_value_that_no_longer_matches_its_index(tmp_path: Path):
    # Arrange: one message id changed in place, in the table or its unique index: each
    # page is well formed, but the index and its table disagree
    path = tmp_path / "state.db"
    ids = _written_state(path)
    data = path.read_bytes()
    victim = ids[len(ids) // 2].encode()
    assert data.count(victim) == 2  # the row and its index entry
    path.write_bytes(data.replace(victim, victim[::-1], 1))

    # Act / Assert: the quick check reads past it, the full one does not
    SqliteLinkState(path, check="quick").close()
    with pytest.raises(CorruptStateError, match="integrity_check"):
        SqliteLinkState(path, check="full")


def test_a_sound_database_passes_both_checks_and_keeps_its_state(tmp_path: Path):
    path = tmp_path / "state.db"
    ids = _written_state(path)

    for check in ("quick", "full"):
        with SqliteLinkState(path, check=check) as state:  # type: ignore[arg-type]
            assert {state.message_status(i) for i in ids} == {DeliveryStatus.PENDING}


def test_check_must_be_quick_or_full(tmp_path: Path):
    with pytest.raises(ConfigError, match="check"):
        SqliteLinkState(tmp_path / "state.db", check="none")  # type: ignore[arg-type]


def test_a_new_database_is_created_whole_and_owner_only(tmp_path: Path, umask_zero: None):
    path = tmp_path / "link" / "state.db"

    with SqliteLinkState(path) as state:
        state.register_node()
        files = {p.name: _mode(p) for p in path.parent.iterdir()}

    assert files == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}
    assert _mode(path.parent) == 0o700
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"


def test_an_existing_database_others_may_read_is_tightened(tmp_path: Path, umask_zero: None):
    # Arrange: an older link's files, its log and shared memory still there
    path = tmp_path / "state.db"
    _written_state(path, messages=1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE unrelated (x)")  # in the log, not yet in the file
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").chmod(0o644)

    # Act
    try:
        with SqliteLinkState(path):
            modes = {p.name: _mode(p) for p in tmp_path.iterdir()}
    finally:
        other.close()

    # Assert
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


def test_a_crash_while_creating_leaves_no_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Arrange: creation stops after the draft exists, before it has its name
    path = tmp_path / "state.db"

    def crash(*args: object) -> None:
        raise OSError(5, "the process dies here")

    monkeypatch.setattr(_sqlite_file.os, "link", crash)

    # Act
    with pytest.raises(StorageError):
        SqliteLinkState(path)

    # Assert: no empty database to refuse at the next start, and no draft left over
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    with SqliteLinkState(path) as state:
        assert state.list_runs() == []
