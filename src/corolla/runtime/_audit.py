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
from collections.abc import Iterable, Mapping
from typing import Any

from corolla.trust import AuditLog

__all__ = ["NO_ACTOR", "audit", "audit_many", "reason_summary"]

_log = logging.getLogger("corolla.runtime")

#: The actor of a record where no account is known.
NO_ACTOR = ""
#: The most characters of a reason (an error's, a run's end) a record keeps.
_REASON_CHARS = 500


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
