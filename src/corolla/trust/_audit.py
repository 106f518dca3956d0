"""An append-only, hash-chained audit log: one JSON object a line.

Each record holds its sequence number, time, kind, actor and data, the hash of the
record before it (``prev``) and its own hash: the SHA-256 of ``prev`` and the record's
canonical JSON (sorted keys, no spaces, UTF-8) without ``hash``. The line is the
canonical JSON of the whole record, ``hash`` included. Editing, deleting, inserting or
reordering a record breaks the chain from that record on, which
:func:`~corolla.trust.verify_audit_log` finds and names (see ``_audit_verify`` for what
the chain cannot show).

A record's data is metadata (ids, names, hashes, outcomes), JSON with string keys, at
most :data:`MAX_RECORD_BYTES` a line; the log refuses a record that is not.

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

__all__ = ["GENESIS", "MAX_RECORD_BYTES", "AuditLog", "AuditRecord", "record_hash"]

_log = logging.getLogger("corolla.trust")

#: The ``prev`` of the first record.
GENESIS = "0" * 64
#: The longest line a record may take: records hold metadata, never contents.
MAX_RECORD_BYTES = 1 << 20
#: How far back from the end a reopened log reads at a time, looking for its last line.
_TAIL_BYTES = 1 << 20
#: One encoder for every record (``json.dumps`` with options builds one per call).
_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
#: Where ``hash`` goes in a record's canonical JSON: its keys sorted, it comes before
#: ``kind``, the last key of that name (one inside ``data`` comes before it, and
#: ``kind``'s value, a JSON string, cannot hold an unescaped quote).
_BEFORE_HASH = b',"kind":'
_string = json.encoder.encode_basestring  # a JSON string, as the encoder above writes it
_STR = frozenset({str})
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _canonical(fields: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8.

    Raises
    ------
    ValueError
        If a value is not finite, or a string is not valid Unicode (a lone surrogate).
    TypeError
        If a value is not JSON.
    """
    return _encode(fields).encode()


def _with_hash(canonical: bytes, hash: str) -> bytes:
    """The line of a record whose fields' canonical JSON is ``canonical``: with
    ``hash``, as the canonical JSON of all its keys would put it."""
    at = canonical.rfind(_BEFORE_HASH)
    return b"".join(
        (canonical[:at], b',"hash":"', hash.encode("ascii"), b'"', canonical[at:], b"\n")
    )


def record_hash(prev: str, fields: Mapping[str, Any]) -> str:
    """The hash of a record whose fields (all but ``hash``) are ``fields``."""
    return hashlib.sha256(prev.encode("ascii") + _canonical(fields)).hexdigest()


def _split_canonical(
    seq: int, when: str, kind: str, actor: str, data: Mapping[str, Any] | None, prev: str
) -> tuple[bytes, bytes]:
    """The canonical JSON of a new record's fields (its time's JSON ``when``), in two
    parts: before and after where its hash goes. It is :func:`_canonical` of the fields,
    written out: only ``data`` needs the encoder's sorting.

    Raises
    ------
    ConfigError
        If the record cannot be written (see :meth:`AuditLog.record_many`).
    """
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"audit record kind {kind!r}: a kind is a non-empty string")
    if not isinstance(actor, str):
        raise ConfigError(f"audit record {kind!r}: its actor must be a string")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        if not isinstance(data, Mapping):
            raise ConfigError(f"audit record {kind!r}: its data must be a mapping")
        data = dict(data)
    if _has_other_keys(data):
        raise ConfigError(f"audit record {kind!r}: its data has a key that is no string")
    try:
        before = f'{{"actor":{_string(actor)},"data":{_encode(data)}'.encode()
        after = f',"kind":{_string(kind)},"prev":"{prev}","seq":{seq},"time":{when}}}'.encode()
    except (ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
        raise ConfigError(f"audit record {kind!r}: its data is not JSON: {exc}") from None
    if len(before) + len(after) + 80 > MAX_RECORD_BYTES:  # with its hash
        raise ConfigError(
            f"audit record {kind!r} has {len(before) + len(after)} bytes; a record holds at "
            f"most {MAX_RECORD_BYTES} (metadata, never contents)"
        )
    return before, after


def _has_other_keys(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> bool:
    """Whether a key other than a string is in ``value``: JSON would make it a string,
    and sort it differently once read back, so the record's hash would not match."""
    if isinstance(value, dict):
        if not _STR.issuperset(map(type, value)):
            return True
        items: Iterable[Any] = value.values()
    else:
        items = value
    if _SCALARS.issuperset(map(type, items)):  # the usual case, at C speed
        return False
    return any(isinstance(i, dict | list | tuple) and _has_other_keys(i) for i in items)


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
        return _with_hash(_canonical(self.fields()), self.hash)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (every field, ``hash`` included)."""
        return {**self.fields(), "hash": self.hash}


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
        end = self._line_start(size)
        if end < size:
            _log.warning(
                "%s: cutting off a partial last record (%d bytes) left by a crash",
                self.path,
                size - end,
            )
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        if end == 0:
            return 0, GENESIS
        start = self._line_start(end - 1)
        last = os.pread(self._fd, end - start, start)
        try:
            record = json.loads(last)
            seq, head = record["seq"], record["hash"]
            if not isinstance(seq, int) or not isinstance(head, str) or len(head) != 64:
                raise ValueError("no seq and hash")
            int(head, 16)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.path}: the last line is not an audit record ({exc}); check the log "
                "with `corolla audit verify`"
            ) from None
        return seq, head

    def _line_start(self, end: int) -> int:
        """Where the line holding byte ``end - 1`` ends, plus one: the offset just past the
        last newline before ``end`` (0 if there is none)."""
        while end > 0:
            start = max(0, end - _TAIL_BYTES)
            at = os.pread(self._fd, end - start, start).rfind(b"\n")
            if at >= 0:
                return start + at + 1
            end = start
        return 0

    @property
    def head(self) -> tuple[int, str]:
        """The last record's seq and hash."""
        with self._lock:
            return self._seq, self._head

    def record(self, kind: str, actor: str = "", data: Mapping[str, Any] | None = None) -> int:
        """Append one record; returns its seq once it is on disk.

        Raises
        ------
        ConfigError
            See :meth:`record_many`.
        """
        return self.record_many([(kind, actor, data)])[-1]

    def record_many(
        self, entries: Iterable[tuple[str, str, Mapping[str, Any] | None]]
    ) -> list[int]:
        """Append records in order, with one write and one fsync; returns their seqs once
        they are on disk.

        Raises
        ------
        ConfigError
            If the log is closed or cannot be written (nothing more is written then), or a
            record is refused: a kind that is not a non-empty string, data that is not
            JSON with string keys (or not finite, or not valid Unicode), or a record
            longer than :data:`MAX_RECORD_BYTES`. A refused record refuses its batch, and
            the log stays as it was.
        """
        entries = list(entries)
        with self._lock:
            if self._closed:
                raise ConfigError(f"the audit log {self.path} is closed")
            now = self._clock()  # under the lock: times follow the seqs
            try:
                when = _encode(now)
            except ValueError:
                raise ConfigError(f"the audit log's clock read {now!r}, not a time") from None
            seq, head = self._seq, self._head
            lines = []
            for kind, actor, data in entries:
                seq += 1
                before, after = _split_canonical(seq, when, kind, actor, data, head)
                head = hashlib.sha256(head.encode("ascii") + before + after).hexdigest()
                lines.append(
                    b"".join((before, b',"hash":"', head.encode("ascii"), b'"', after, b"\n"))
                )
            if not lines:
                return []
            first = self._seq + 1
            self._seq, self._head = seq, head
            with self._written:
                self._pending.append((seq, b"".join(lines)))
        self._wait_durable(seq)
        return list(range(first, seq + 1))

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
