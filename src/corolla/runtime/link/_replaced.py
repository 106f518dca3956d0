"""The checkpoint records a run's later checkpoints replaced, until they are collected."""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["ReplacedCheckpoints"]


class ReplacedCheckpoints:
    """By run, the hashes of checkpoint records that a newer checkpoint replaced.

    The state keeps only a run's latest checkpoint; the record it replaced is a blob that
    nothing names any more, which the run's next collection deletes (``_collection``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replaced: dict[int, set[str]] = {}

    def add(self, run_id: int, blob_hash: str) -> None:
        """Run ``run_id``'s checkpoint ``blob_hash`` was replaced by a newer one."""
        with self._lock:
            self._replaced.setdefault(run_id, set()).add(blob_hash)

    def of(self, run_id: int) -> set[str]:
        """The checkpoint records run ``run_id`` replaced."""
        with self._lock:
            return set(self._replaced.get(run_id, ()))

    def forget(self, run_id: int, records: Iterable[str] | None = None) -> None:
        """Forget ``records`` (all of them if None) among run ``run_id``'s replaced
        checkpoints."""
        with self._lock:
            if records is None:
                self._replaced.pop(run_id, None)
            else:
                self._replaced.get(run_id, set()).difference_update(records)
