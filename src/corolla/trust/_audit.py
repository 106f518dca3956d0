"""An append-only, hash-chained audit log: one JSON object a line.

Each record holds its sequence number, time, kind, actor and data, the hash of the
record before it (``prev``) and its own hash: the SHA-256 of ``prev`` and the record's
canonical JSON (sorted keys, no spaces) without ``hash``. Editing, deleting, inserting
or reordering a record breaks the chain from that record on, which
:func:`~corolla.trust.verify_audit_log` finds and names.

Writing is durable: :meth:`AuditLog.record` returns once its line is on disk (flushed
and fsynced). Threads that record at the same time share one fsync: a record waits for
the write in progress, and the next write takes every record that waited meanwhile.

A process that dies while writing leaves at most a partial last line; the next
:class:`AuditLog` on the file cuts it off (it was never acknowledged) and goes on from
the last whole record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..core import ConfigError

__all__ = ["GENESIS", "AuditLog", "AuditRecord", "record_hash"]

_log = logging.getLogger("corolla.trust")

#: The ``prev`` of the first record.
GENESIS = "0" * 64
#: How far back from the end a reopened log looks for its last whole record.
_TAIL_BYTES = 1 << 20


def _canonical(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(prev: str, fields: Mapping[str, Any]) -> str:
    """The hash of a record whose fields (all but ``hash``) are ``fields``."""
    return hashlib.sha256(prev.encode("ascii") + _canonical(fields)).hexdigest()


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """One record of an audit log."""

    seq: int
    time: float
    kind: str
    actor: str
    data: dict[str, Any]
    prev: str
    hash: str

    def fields(self) -> dict[str, Any]:
        """What the record's hash covers (with ``prev``)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "actor": self.actor,
            "data": self.data,
            "prev": self.prev,
        }

    def line(self) -> bytes:
        """The record as the log writes it."""
        return _canonical({**self.fields(), "hash": self.hash}) + b"\n"


class AuditLog:
    """The audit log in file ``path`` (created, its owner's only, if missing).

    Parameters
    ----------
    path
        The log file.
    clock
        Where each record's time is read.

    Raises
    ------
    ConfigError
        If the file's last whole line is not an audit record.
    """

    FILE = "audit.log"

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._seq, self._head = self._recover()
        except BaseException:
            os.close(self._fd)
            raise
        self._lock = threading.Lock()  # orders records: seq and chain
        self._written = threading.Condition(threading.Lock())
        self._pending: list[tuple[int, bytes]] = []
        self._durable_seq = self._seq
        self._writing = False
        self._failure: OSError | None = None
        self._closed = False

    def _recover(self) -> tuple[int, str]:
        """The last whole record's seq and hash; a partial last line is cut off."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0, GENESIS
        start = max(0, size - _TAIL_BYTES)
        tail = os.pread(self._fd, size - start, start)
        whole = tail.rfind(b"\n") + 1
        if whole < len(tail):
            _log.warning(
                "%s: cutting off a partial last record (%d bytes) left by a crash",
                self.path,
                len(tail) - whole,
            )
            os.ftruncate(self._fd, start + whole)
            os.fsync(self._fd)
            tail = tail[:whole]
        lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
        if not lines[-1]:
            return 0, GENESIS
        try:
            last = json.loads(lines[-1])
            return int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.path}: the last line is not an audit record ({exc}); check the log "
                "with `corolla audit verify`"
            ) from None

    @property
    def head(self) -> tuple[int, str]:
        """The last record's seq and hash."""
        with self._lock:
            return self._seq, self._head

    def record(self, kind: str, actor: str = "", data: Mapping[str, Any] | None = None) -> int:
        """Append one record; returns its seq once it is on disk."""
        return self.record_many([(kind, actor, data)])[-1]

    def record_many(
        self, entries: Iterable[tuple[str, str, Mapping[str, Any] | None]]
    ) -> list[int]:
        """Append records in order; returns their seqs once they are on disk."""
        now = self._clock()
        seqs = []
        with self._lock:
            if self._closed:
                raise ConfigError(f"the audit log {self.path} is closed")
            lines = []
            for kind, actor, data in entries:
                self._seq += 1
                fields = {
                    "seq": self._seq,
                    "time": now,
                    "kind": kind,
                    "actor": actor,
                    "data": dict(data or {}),
                    "prev": self._head,
                }
                self._head = record_hash(self._head, fields)
                lines.append(_canonical({**fields, "hash": self._head}) + b"\n")
                seqs.append(self._seq)
            if not seqs:
                return seqs
            with self._written:
                self._pending.append((self._seq, b"".join(lines)))
        self._wait_durable(seqs[-1])
        return seqs

    def _wait_durable(self, seq: int) -> None:
        with self._written:
            while self._durable_seq < seq:
                if self._failure is not None:
                    raise ConfigError(f"cannot write the audit log {self.path}: {self._failure}")
                if self._writing:
                    self._written.wait()
                    continue
                batch, self._pending = self._pending, []
                self._writing = True
                self._written.release()
                try:
                    data = memoryview(b"".join(data for _, data in batch))
                    while data:
                        data = data[os.write(self._fd, data) :]
                    os.fsync(self._fd)
                except OSError as exc:
                    # The chain in memory is ahead of the file: nothing more is written.
                    self._failure = exc
                finally:
                    self._written.acquire()
                    self._writing = False
                    self._written.notify_all()
                if self._failure is None:
                    self._durable_seq = max(self._durable_seq, batch[-1][0])

    def close(self) -> None:
        """Close the file; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.close(self._fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
