"""Checkpoints of the write-ahead log, off the writers' path.

In WAL mode every commit appends pages to the log, and SQLite copies the log back into
the database file (a checkpoint) from inside the commit that makes the log pass 1,000
pages (4 MiB). A link storing a round of a thousand 40 KB replies writes 40 MB of log a
round, so about every batch of replies paid for a checkpoint: the copy and an fsync of
the database file, on the path of every reply waiting for its acknowledgement.

Here a thread with a connection of its own runs a passive checkpoint every half second:
it copies what it can without waiting for readers or writers, and the writers' commits
only append to the log. The commits' own automatic checkpoint stays as a backstop, at a
larger log (:data:`BACKSTOP_BYTES`, :func:`backstop_pages`), for a log the thread cannot
keep up with. Durability
is unchanged: a commit is durable once the log holding it is, and the log is replayed
after a crash whatever was checkpointed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["BACKSTOP_BYTES", "BackgroundCheckpointer", "backstop_pages"]

_log = logging.getLogger("corolla.state")

#: Bytes of log beyond which a commit checkpoints by itself.
BACKSTOP_BYTES = 64 * 1024 * 1024


def backstop_pages(page_size: int) -> int:
    """:data:`BACKSTOP_BYTES` in pages of ``page_size`` bytes (SQLite counts the log's
    length in pages)."""
    return BACKSTOP_BYTES // page_size


class BackgroundCheckpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on database ``path`` every ``interval_s``.

    Parameters
    ----------
    path
        The database file (in WAL mode).
    interval_s
        Seconds between checkpoints.
    """

    def __init__(self, path: Path, interval_s: float = 0.5) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._interval_s = interval_s
        self._stop = threading.Event()
        #: Checkpoints run: for tests and diagnostics.
        self.checkpoints = 0
        self._thread = threading.Thread(
            target=self._run, name="corolla-state-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.checkpoint()

    def checkpoint(self) -> tuple[int, int, int] | None:
        """Run one passive checkpoint now: ``(busy, log frames, frames checkpointed)``,
        or None if it failed (logged; the next one tries again)."""
        try:
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            _log.warning("checkpoint of the state database failed: %s", exc)
            return None
        self.checkpoints += 1
        return int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        """Stop the thread and close its connection. Idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._conn.close()
