"""Migrations of the SQLite schema: upgrading old databases, refusing newer ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import corolla.state._sqlite
from corolla.state import SchemaVersionError, SqliteLinkState, StorageError
from corolla.state._sqlite_schema import MIGRATIONS, Migration, schema_version

from .doubles import digest

#: A made-up next version of the schema: a new column with a backfill.
V2 = Migration(
    len(MIGRATIONS) + 1,
    "runs get a label",
    (
        "ALTER TABLE runs ADD COLUMN label TEXT NOT NULL DEFAULT ''",
        "UPDATE runs SET label = 'run-' || run_id",
    ),
)


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return schema_version(conn)


def test_migrations_are_numbered_from_one_without_gaps():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_a_new_database_gets_every_migration(tmp_path: Path):
    SqliteLinkState(tmp_path / "state.db").close()

    with sqlite3.connect(tmp_path / "state.db") as conn:
        rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]


def test_an_older_database_is_upgraded_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "state.db"
    with SqliteLinkState(path) as state:
        run = state.create_run(digest(b"bundle"))
    monkeypatch.setattr(corolla.state._sqlite, "MIGRATIONS", (*MIGRATIONS, V2))

    with SqliteLinkState(path) as state:
        assert state.get_run(run.run_id) == run

    assert _version(path) == V2.version
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT label FROM runs").fetchone()[0] == f"run-{run.run_id}"


def test_an_upgrade_that_fails_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "state.db"
    SqliteLinkState(path).close()
    broken = Migration(V2.version, "broken", ("CREATE TABLE extra (x)", "THIS IS NOT SQL"))
    monkeypatch.setattr(corolla.state._sqlite, "MIGRATIONS", (*MIGRATIONS, broken))

    with pytest.raises(StorageError, match="syntax"):
        SqliteLinkState(path)

    assert _version(path) == len(MIGRATIONS)
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "extra" not in tables


def test_a_database_from_a_newer_corolla_is_refused(tmp_path: Path):
    path = tmp_path / "state.db"
    SqliteLinkState(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")

    newest = len(MIGRATIONS)
    with pytest.raises(SchemaVersionError, match=f"schema version 99, newer than the {newest} "):
        SqliteLinkState(path)


def test_a_database_of_something_else_is_refused(tmp_path: Path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")

    with pytest.raises(SchemaVersionError, match="not a Corolla state database"):
        SqliteLinkState(path)
