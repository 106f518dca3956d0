"""The state database's file: created whole and owner-only, refused when it is damaged.

A damaged database must stop the link at start, with what to do, rather than let it
start and then fail every call (or, for an emptied file, silently start over with no
runs and no nodes). So an existing file is checked before the link uses it:

* its header: a file of 0 bytes, or one that does not begin with SQLite's magic string,
  is refused before SQLite sees it (SQLite itself takes a 0-byte file for a new, empty
  database);
* SQLite's own check of every page, once the write-ahead log is replayed:
  ``PRAGMA quick_check`` (the b-trees' structure, each record's format) or, if asked,
  ``PRAGMA integrity_check`` (also each index against its table, which finds damaged
  values the quick check reads past). Opening a state of 50,000 messages and replies
  (42 MB) took 0.21 s and 0.65 s here from the page cache, 0.53 s and 1.23 s from the
  disk (``benchmarks/state_open.py``).

SQLite keeps no checksums of its pages, so bytes changed inside a value that no index
covers, or in a page's unused space, go unnoticed by either check; the write-ahead log's
frames are checksummed, and SQLite stops replaying at the first bad one.

For the 0-byte rule to be sound, this code must never leave such a file itself: a new
database is set up under a temporary name (WAL mode written into its header), fsynced,
and only then linked to its name, so a crash leaves either no database or a valid one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Literal

from ._errors import CorruptStateError
from ._owner_only import FILE_MODE, make_directory, tighten

__all__ = ["CORRUPT_CODES", "IntegrityCheck", "check_pages", "corrupt", "prepare_file"]

#: What every SQLite database file begins with.
MAGIC = b"SQLite format 3\x00"
#: SQLite's result codes for a damaged database and for a file that is none.
CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
#: How an existing database is checked when opened (see the module's docstring).
IntegrityCheck = Literal["quick", "full"]
#: Problems SQLite's checks report at most, and their characters, for the error message.
_REPORTED = 3
_REPORTED_CHARS = 300


def corrupt(path: Path, what: str) -> CorruptStateError:
    """The error for a damaged database ``path``: what is wrong, and what to do."""
    return CorruptStateError(
        f"cannot open the state database {path}: {what}. Stop every process using it, "
        f"then restore it from a backup, or move it aside (with any {path.name}-wal and "
        f"{path.name}-shm beside it) to start with an empty state"
    )


def prepare_file(path: Path, page_size: int | None = None) -> bool:
    """Make database ``path`` ready to connect to; True if it was created now.

    A missing file is created (and its directory, if missing, owner-only), with pages
    of ``page_size`` bytes (SQLite's default if None); an existing
    one must look like an SQLite database. The database and its ``-wal`` and ``-shm``
    files are made owner-only (SQLite creates the latter two with the database's mode).

    Raises
    ------
    CorruptStateError
        If the file is empty or not an SQLite database.
    OSError
        If the file or its directory cannot be created or read.
    """
    parent = path.parent
    if not parent.is_dir():
        parent.parent.mkdir(parents=True, exist_ok=True)
        make_directory(parent)
    created = not path.exists() and _create(path, page_size)
    if not created:
        _check_header(path)
    for suffix in ("", "-wal", "-shm"):
        tighten(Path(f"{path}{suffix}"), FILE_MODE)
    return created


def check_pages(conn: sqlite3.Connection, path: Path, check: IntegrityCheck) -> None:
    """Run SQLite's check of every page of the database behind ``conn``.

    Raises
    ------
    CorruptStateError
        If SQLite finds the database damaged.
    sqlite3.Error
        If the check cannot run.
    """
    pragma = "quick_check" if check == "quick" else "integrity_check"
    try:
        found = [str(row[0]) for row in conn.execute(f"PRAGMA {pragma}({_REPORTED})")]
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) not in CORRUPT_CODES:
            raise
        raise corrupt(path, f"it is damaged ({exc})") from exc
    if found != ["ok"]:
        # A row may hold several lines: the error is one line, and short.
        problems = "; ".join(" ".join(text.split()) for text in found)
        if len(problems) > _REPORTED_CHARS:
            problems = problems[:_REPORTED_CHARS] + "..."
        raise corrupt(path, f"it is damaged (SQLite's {pragma}: {problems})")


def _check_header(path: Path) -> None:
    with path.open("rb") as file:
        head = file.read(len(MAGIC))
    if not head:
        raise corrupt(path, "it is empty (0 bytes), so what it held is lost")
    if head != MAGIC:
        raise corrupt(path, "it is not an SQLite database")


def _create(path: Path, page_size: int | None) -> bool:
    """Create an empty WAL-mode database at ``path``; False if another process made
    one there first (its file is kept)."""
    draft = path.with_name(f".{path.name}.new-{secrets.token_hex(4)}")
    try:
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask took
        finally:
            os.close(fd)
        conn = sqlite3.connect(draft, isolation_level=None)
        try:
            if page_size is not None:  # of an empty database, before it is in WAL mode
                conn.execute(f"PRAGMA page_size = {int(page_size)}")
            # Written into the header: every later connection is in WAL mode too.
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()  # the last connection: its log and shared memory go
        fd = os.open(draft, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(draft, path)  # never replaces: a database made meanwhile is kept
        except FileExistsError:
            return False
        except OSError as exc:
            # A file system without hard links: a rename, which could replace a database
            # created since the check just above, by a process not holding the lock.
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if path.exists():
                return False
            os.replace(draft, path)
    finally:
        for leftover in (draft, Path(f"{draft}-wal"), Path(f"{draft}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    _fsync_directory(path.parent)
    return True


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):  # a no-op where directories cannot be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
