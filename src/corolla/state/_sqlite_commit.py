"""Group commit: the write transactions of concurrent callers share one SQLite commit.

A link with a thousand nodes stores hundreds of replies a second, each of which must be
durable before the node is told it arrived. With ``synchronous=FULL`` every commit
fsyncs the write-ahead log, so committing each reply on its own makes the fsync the
limit, and every other call of the link queues behind it on the connection's lock.

Here a writer enqueues its work and takes the connection's lock. Whoever holds the lock
runs every work queued at that moment in one transaction, each inside its own savepoint
(a work that raises is rolled back alone and its caller gets the error), commits once,
and only then marks them done. A writer that finds its work done when it gets the lock
returns at once: its changes were committed by another thread.

Durability: given the write-ahead log's path (``sync_path``), the connection runs with
``synchronous=NORMAL``, so a commit only writes its frames to the log, and each writer
then fsyncs the log itself, after releasing the lock, before it returns. Those fsyncs
are grouped too: one writer fsyncs while the others wait, and a writer whose commit that
fsync covered returns without another. An fsync makes every frame written before it
durable, the commit frame included, so a writer never returns before its changes would
survive a power loss (as with SQLite's ``synchronous=FULL``), while other threads go on
reading and committing during the fsync instead of queuing behind it. Readers may see a
commit whose fsync is still running; only its writer is told it is done, after.

A caller holding many writes at once (a batch of replies gathered by the link's event
loop) hands them over together with :meth:`GroupCommit.write_many`: one lock, one
commit, one fsync, and each write's own result or error.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from ._errors import StorageError

__all__ = ["GroupCommit"]

T = TypeVar("T")


class _Work(Generic[T]):
    """One caller's write: what to run, and what came of it."""

    __slots__ = ("commit", "done", "error", "result", "run")

    def __init__(self, run: Callable[[sqlite3.Connection], T]) -> None:
        self.run = run
        self.commit = 0  # the number of the commit that holds it
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """One SQLite connection (autocommit mode) shared by threads, writes grouped.

    Parameters
    ----------
    conn
        The connection, opened with ``isolation_level=None`` and
        ``check_same_thread=False``. Closed by :meth:`close`.
    sync_path
        The write-ahead log to fsync after each group of commits (the connection then
        runs with ``synchronous=NORMAL``), or None to leave durability to SQLite.
    """

    def __init__(self, conn: sqlite3.Connection, sync_path: Path | None = None) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Work[object]] = []
        self._sync_path = sync_path
        self._sync_lock = threading.Lock()
        self._synced = 0
        #: Commits made (each may hold many writes): for tests and diagnostics.
        self.commits = 0
        #: fsyncs of the write-ahead log made (each may cover many commits).
        self.syncs = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Hold the connection and a read transaction.

        Raises
        ------
        StorageError
            If the store is closed or SQLite fails.
        """
        with self._lock:
            conn = self._open()
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"state database operation failed: {exc}") from exc

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a write transaction and return its result once committed.

        ``work`` may run on another caller's thread, in a transaction with other works;
        it sees their changes. If it raises, its own changes are undone and the
        exception is raised here (an ``sqlite3.Error`` as :class:`StorageError`).

        Raises
        ------
        StorageError
            If the store is closed, or SQLite fails (a failed commit fails every work
            of the batch: none of them is stored).
        """
        item = _Work(work)
        with self._queue_lock:
            self._queue.append(item)  # type: ignore[arg-type]
        with self._lock:
            if not item.done:
                self._commit_queued()
        if item.error is not None:
            raise item.error
        self._sync(item.commit)
        return item.result  # type: ignore[return-value]

    def write_many(
        self, works: Sequence[Callable[[sqlite3.Connection], T]]
    ) -> list[T | BaseException]:
        """Run ``works`` as :meth:`write` runs one, in one commit; return, in order, each
        work's result, or the exception it raised (its own changes undone).

        Raises
        ------
        StorageError
            If the fsync fails (nothing can be told durable).
        """
        items = [_Work(work) for work in works]
        if not items:
            return []
        with self._queue_lock:
            self._queue.extend(items)  # type: ignore[arg-type]
        with self._lock:
            if not all(item.done for item in items):
                self._commit_queued()
        committed = [item.commit for item in items if item.error is None]
        if committed:
            self._sync(max(committed))
        return [item.error if item.error is not None else item.result for item in items]  # type: ignore[misc]

    def sync(self) -> None:
        """Make everything committed so far durable, also what was committed on the
        connection without :meth:`write` (the schema's migrations).

        Raises
        ------
        StorageError
            If the fsync fails.
        """
        self._sync(None)

    def _sync(self, commit: int | None) -> None:
        """Return once commit number ``commit`` (None: every commit) is durable: fsync
        the log unless an fsync that began after that commit has already ended."""
        if self._sync_path is None:
            return
        with self._sync_lock:
            if commit is not None and self._synced >= commit:
                return
            covered = self.commits  # every commit counted here has written its frames
            try:
                fd = os.open(self._sync_path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except FileNotFoundError:  # no log yet: nothing was written
                pass
            except OSError as exc:
                # No path in the message: a node whose reply this was is told it.
                raise StorageError(
                    f"cannot make the state durable (fsync of its log): {exc.strerror or exc}"
                ) from exc
            self._synced = covered
            self.syncs += 1

    def _commit_queued(self) -> None:
        """Run and commit every queued work (the lock is held)."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
        committed = False
        try:
            conn = self._open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for item in batch:
                        _run_in_savepoint(conn, item)
                    conn.execute("COMMIT")
                    committed = True
                    self.commits += 1
                    for item in batch:
                        item.commit = self.commits
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StorageError(f"state database operation failed: {exc}") from exc
        except StorageError as exc:
            for item in batch:
                item.result, item.error = None, exc
        finally:
            for item in batch:
                if not committed and item.error is None:
                    # Left by an exception that is not ours (KeyboardInterrupt): nothing
                    # of the batch was committed.
                    item.error = StorageError("the write was abandoned; nothing was stored")
                item.done = True

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("the state store is closed")
        return self._conn

    def close(self) -> None:
        """Close the connection; later calls raise :class:`StorageError`. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _run_in_savepoint(conn: sqlite3.Connection, item: _Work[object]) -> None:
    """Run one work; if it raises, undo its changes only and keep its error."""
    conn.execute("SAVEPOINT work")
    try:
        item.result = item.run(conn)
    except Exception as exc:
        # If SQLite rolled the whole transaction back by itself (a full disk, an I/O
        # error), ROLLBACK TO fails, and so does the batch: nothing is committed.
        conn.execute("ROLLBACK TO work")
        conn.execute("RELEASE work")
        item.error = (
            StorageError(f"state database operation failed: {exc}")
            if isinstance(exc, sqlite3.Error)
            else exc
        )
        if isinstance(exc, sqlite3.Error):
            item.error.__cause__ = exc
        return
    conn.execute("RELEASE work")
