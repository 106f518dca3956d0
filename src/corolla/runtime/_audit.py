"""How the link and the nodes write their audit logs (:class:`~corolla.trust.AuditLog`).

Records are metadata: ids, names, hashes, addresses, outcomes and reasons cut short,
never a message's contents, a run's config or a node's config. Each carries the account
that acted (``actor``), :data:`NO_ACTOR` where none is known: the link itself, a node,
and Control callers while the link keeps no accounts.

Writing a record never fails what it records: a log that cannot be written (a full
disk) is reported in the process's log, and the link or node goes on. The records it
missed are not in the log, whose chain stays intact up to its last record written; an
operator who needs every action recorded watches for these errors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from corolla.trust import AuditLog

__all__ = ["NO_ACTOR", "REFUSALS_PER_S", "RecordBudget", "audit", "audit_many", "reason_summary"]

_log = logging.getLogger("corolla.runtime")

#: The actor of a record where no account is known.
NO_ACTOR = ""
#: The most characters of a reason (an error's, a run's end) a record keeps.
_REASON_CHARS = 500
#: Refused calls recorded one by one, a second.
REFUSALS_PER_S = 20


def audit(
    log: AuditLog | None,
    kind: str,
    data: Mapping[str, Any] | None = None,
    *,
    actor: str = NO_ACTOR,
) -> None:
    """Record ``kind`` with ``data`` in ``log`` (none if None), durably; never raises."""
    audit_many(log, [(kind, data or {})], actor=actor)


def audit_many(
    log: AuditLog | None,
    entries: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    actor: str = NO_ACTOR,
) -> None:
    """Record each ``(kind, data)`` of ``entries`` in ``log`` with one write and one fsync
    (a round's messages or replies at once); never raises."""
    if log is None:
        return
    records = [(kind, actor, data) for kind, data in entries]
    if not records:
        return
    try:
        log.record_many(records)
    except Exception as exc:
        _log.error(
            "audit log %s: %d record(s) from %s not written: %s",
            log.path,
            len(records),
            records[0][0],
            exc,
        )


def reason_summary(text: str) -> str:
    """A reason as a record keeps it: at most :data:`_REASON_CHARS` characters."""
    if len(text) <= _REASON_CHARS:
        return text
    return text[: _REASON_CHARS - 1] + "…"


class RecordBudget:
    """How many records of refused calls are written one by one each second: a flood of
    refused calls (made by whoever reaches a port, no account needed) is counted, not
    written, so that it neither fills the disk nor waits on an fsync a call.

    Parameters
    ----------
    clock
        Monotonic seconds.
    per_second
        Records a second; the last one notes that more are not recorded one by one.
    """

    NOTE = "more refusals this second are not recorded one by one"

    def __init__(self, clock: Callable[[], float], per_second: int = REFUSALS_PER_S) -> None:
        self._clock = clock
        self._per_second = per_second
        self._lock = threading.Lock()
        self._since = float("-inf")
        self._count = 0

    def take(self) -> dict[str, str] | None:
        """What to add to the next record's data (``{}``, or the note on the second's
        last record), or None if it is over this second's budget and is not written."""
        with self._lock:
            now = self._clock()
            if now - self._since >= 1.0:
                self._since, self._count = now, 0
            self._count += 1
            count = self._count
        if count > self._per_second:
            return None
        return {"note": self.NOTE} if count == self._per_second else {}
