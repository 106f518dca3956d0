"""Checking an audit log: :func:`verify_audit_log` walks its chain, :func:`read_audit_log`
reads its records.

Both read the file a line at a time: a log of millions of records takes the memory of
one line. The walk starts at the first line. Each line must be a record (its seven
fields, of their types), written as the log writes it (canonical JSON), its ``seq`` one
more than the record's before it (the first one 1), its ``prev`` the hash of the record
before it (the first one :data:`~corolla.trust.GENESIS`), and its ``hash`` the hash of
its content. The first line that is not is named, with why::

    line 5 is not an audit record (Expecting value: line 1 column 1 (char 0))
    record 17: its hash does not match its content (edited?)
    record 18 follows record 16 (deleted or reordered?)
    record 9 does not chain to record 8: its prev is not record 8's hash (inserted, or
    record 8 rewritten?)

An edited, deleted, inserted or reordered record is found this way, except at the end.

What the chain cannot show, alone:

- **Records cut off at the end.** A log whose last records were removed is a shorter
  log whose chain holds.
- **A rewrite from some record on.** The chain is not keyed: whoever can write the file
  can edit a record, compute the hashes of it and of every record after it again, or
  append records of their own, and the chain holds.

Both are caught by keeping the log's head (the last record's ``seq`` and ``hash``, which
every verdict reports as ``SEQ:HASH``) somewhere the log's writer cannot change it: a
ticket, another machine, a signed message. ``verify_audit_log(path, head=(seq, hash))``
(``corolla audit verify --head SEQ:HASH``) then checks that the log still holds record
``seq`` with that hash: records cut off after it, or a rewrite from it or from a record
before it, are found. The records after it are not checked against anything: the log
grows. A head noted often leaves little to rewrite unnoticed.

A partial last line, without its newline, is what a process that died while writing
leaves: never acknowledged, it is no record. The walk stops before it (the verdict
counts its bytes), and the next :class:`~corolla.trust.AuditLog` opened on the file cuts
it off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..core import ConfigError, CorollaError, ErrorCode
from ._audit import GENESIS, MAX_RECORD_BYTES, AuditRecord, _canonical, _with_hash

__all__ = ["AuditVerdict", "BrokenAuditLogError", "read_audit_log", "verify_audit_log"]

_KEYS = frozenset({"seq", "time", "kind", "actor", "data", "prev", "hash"})
_HEX = frozenset("0123456789abcdef")


class BrokenAuditLogError(CorollaError, ValueError):
    """An audit log whose chain does not hold: a record edited, deleted, inserted or
    reordered, a line that is no record, or a head that the log no longer holds.

    Its code is ``STORAGE``, as for any stored data found damaged.

    Attributes
    ----------
    line
        The first bad line (counted from 1), or None where the problem is at no line
        (the log ends before an expected head).
    seq
        The seq the first bad record claims, where it is a record.
    """

    code = ErrorCode.STORAGE

    def __init__(self, message: str, *, line: int | None = None, seq: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.seq = seq


@dataclasses.dataclass(frozen=True)
class AuditVerdict:
    """What :func:`verify_audit_log` found."""

    #: The log file.
    path: Path
    #: Whether every record is intact (and the expected head, if any, is there).
    ok: bool
    #: Intact records, from the first: all of them if ``ok``, those before the first
    #: bad line if not.
    records: int
    #: The seq and hash of the last intact record (0 and ``GENESIS`` if none).
    head_seq: int
    head_hash: str
    #: The first bad line (counted from 1); None if ok, or if the log ends before the
    #: expected head.
    line: int | None = None
    #: The seq the first bad record claims (or the expected head's), where known.
    seq: int | None = None
    #: Why the log is not intact, naming the first bad record; "" if ok.
    problem: str = ""
    #: Bytes of a partial last line (a crash while writing), left out of the walk.
    partial_bytes: int = 0

    @property
    def head(self) -> tuple[int, str]:
        """The last intact record's seq and hash."""
        return self.head_seq, self.head_hash

    @property
    def head_text(self) -> str:
        """The head as ``SEQ:HASH``, as ``corolla audit verify --head`` takes it."""
        return f"{self.head_seq}:{self.head_hash}"

    def error(self) -> BrokenAuditLogError:
        """The error that says what is wrong (for a verdict that is not ok)."""
        return BrokenAuditLogError(f"{self.path}: {self.problem}", line=self.line, seq=self.seq)


class _Broken(Exception):
    """Line ``line`` is bad: ``problem`` says why."""

    def __init__(self, problem: str, line: int, seq: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.seq = seq


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value)


def _parse(number: int, raw: bytes) -> tuple[AuditRecord, bytes]:
    """The record on line ``number`` and the canonical JSON of its fields.

    Raises
    ------
    _Broken
        If the line is not an audit record.
    """
    try:
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        if value.keys() != _KEYS:
            missing = sorted(_KEYS - value.keys())
            extra = sorted(value.keys() - _KEYS)
            raise ValueError(
                ", ".join(
                    ([f"missing {', '.join(missing)}"] if missing else [])
                    + ([f"unexpected {', '.join(extra)}"] if extra else [])
                )
            )
        seq, when = value["seq"], value["time"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError(f"seq {seq!r} is not a positive integer")
        if not isinstance(when, int | float) or isinstance(when, bool):
            raise ValueError(f"time {when!r} is not a number")
        if not isinstance(value["kind"], str) or not value["kind"]:
            raise ValueError("its kind is not a non-empty string")
        if not isinstance(value["actor"], str):
            raise ValueError("its actor is not a string")
        if not isinstance(value["data"], dict):
            raise ValueError("its data is not an object")
        if not _is_hash(value["prev"]) or not _is_hash(value["hash"]):
            raise ValueError("its prev or hash is not 64 lowercase hex digits")
        record = AuditRecord(**value)
        canonical = _canonical(record.fields())  # a NaN, a lone surrogate: ValueError
    except (ValueError, RecursionError) as exc:
        raise _Broken(f"line {number} is not an audit record ({exc})", number) from None
    return record, canonical


class _Chain:
    """Checks records line by line against the chain of those before."""

    def __init__(self) -> None:
        self.records = 0
        self.head_seq = 0
        self.head_hash = GENESIS

    def check(self, number: int, raw: bytes) -> AuditRecord:
        """The record on line ``number``, which follows the last one checked.

        Raises
        ------
        _Broken
            If the line is not the record that comes next, intact.
        """
        record, canonical = _parse(number, raw)
        seq, last = record.seq, self.head_seq
        if seq != last + 1:
            if last == 0:
                why = f"record {seq} is the first record, where record 1 should be (deleted?)"
            elif seq <= last:
                why = f"record {seq} follows record {last} (inserted or reordered?)"
            else:
                why = f"record {seq} follows record {last} (deleted or reordered?)"
            raise _Broken(why, number, seq)
        if record.prev != self.head_hash:
            if last == 0:
                why = f"record {seq} does not start the chain: its prev is not {GENESIS[:8]}…"
            else:
                why = (
                    f"record {seq} does not chain to record {last}: its prev is not record "
                    f"{last}'s hash (inserted, or record {last} rewritten?)"
                )
            raise _Broken(why, number, seq)
        if record.hash != _hash(record.prev, canonical):
            raise _Broken(
                f"record {seq}: its hash does not match its content (edited?)", number, seq
            )
        if raw != _with_hash(canonical, record.hash)[:-1]:
            raise _Broken(
                f"record {seq} is not written as the log writes it (edited?)", number, seq
            )
        self.records += 1
        self.head_seq, self.head_hash = seq, record.hash
        return record


def _hash(prev: str, canonical: bytes) -> str:
    return hashlib.sha256(prev.encode("ascii") + canonical).hexdigest()


def _open(path: Path) -> BinaryIO:
    """The log, to read.

    Raises
    ------
    ConfigError
        If there is no file at ``path`` or it cannot be read.
    """
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ConfigError(f"no audit log at {path}: the file does not exist") from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path} is a directory, not an audit log (a state directory keeps it in audit.log)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the audit log {path}: {exc.strerror}") from None


def _lines(
    file: BinaryIO, partial: list[int], *, skip_long: bool = False
) -> Iterator[tuple[int, bytes]]:
    """Each whole line of ``file`` with its number, without its newline; a partial last
    line's size goes to ``partial``.

    Raises
    ------
    _Broken
        If a line is longer than any record can be, unless ``skip_long``.
    """
    number = 0
    while raw := file.readline(MAX_RECORD_BYTES + 1):
        number += 1
        if not raw.endswith(b"\n"):
            if len(raw) <= MAX_RECORD_BYTES:
                partial.append(len(raw))
                return
            if not skip_long:
                raise _Broken(
                    f"line {number} is not an audit record (longer than {MAX_RECORD_BYTES} bytes)",
                    number,
                )
            while (rest := file.readline(MAX_RECORD_BYTES)) and not rest.endswith(b"\n"):
                pass
            continue
        yield number, raw[:-1]


def _check_head(head: tuple[int, str]) -> None:
    """Refuse what is no head: a seq and a hash, or 0 and ``GENESIS`` (an empty log's).

    Raises
    ------
    ConfigError
        If ``head`` is not a head.
    """
    seq, hash = head
    if not isinstance(seq, int) or seq < 0 or not _is_hash(hash) or (seq == 0) != (hash == GENESIS):
        raise ConfigError(
            f"an expected head is SEQ:HASH, a record's seq and its hash (64 lowercase hex "
            f"digits), as `corolla audit verify` prints it; got {seq}:{hash}"
        )


def verify_audit_log(
    path: str | os.PathLike[str], *, head: tuple[int, str] | None = None
) -> AuditVerdict:
    """Walk the chain of the audit log in ``path``, up to its first bad line.

    Parameters
    ----------
    path
        The log file.
    head
        A head noted earlier (``seq`` and ``hash``): the log must still hold that record,
        with that hash.

    Raises
    ------
    ConfigError
        If there is no file at ``path``, it cannot be read, or ``head`` is malformed.
    """
    path = Path(path)
    if head is not None:
        _check_head(head)
    chain = _Chain()
    partial: list[int] = []
    with _open(path) as file:
        try:
            for number, raw in _lines(file, partial):
                record = chain.check(number, raw)
                if head is not None and record.seq == head[0] and record.hash != head[1]:
                    raise _Broken(
                        f"record {record.seq}'s hash is {record.hash[:16]}…, not the "
                        f"expected {head[1][:16]}… (the log was rewritten from record "
                        f"{record.seq} or before)",
                        number,
                        record.seq,
                    )
        except _Broken as broken:
            return AuditVerdict(
                path,
                ok=False,
                records=chain.records,
                head_seq=chain.head_seq,
                head_hash=chain.head_hash,
                line=broken.line,
                seq=broken.seq,
                problem=broken.problem,
            )
    partial_bytes = partial[0] if partial else 0
    if head is not None and chain.head_seq < head[0]:
        return AuditVerdict(
            path,
            ok=False,
            records=chain.records,
            head_seq=chain.head_seq,
            head_hash=chain.head_hash,
            seq=head[0],
            problem=(
                f"the log ends at record {chain.head_seq}, before the expected head, record "
                f"{head[0]} (records cut off?)"
            ),
            partial_bytes=partial_bytes,
        )
    return AuditVerdict(
        path,
        ok=True,
        records=chain.records,
        head_seq=chain.head_seq,
        head_hash=chain.head_hash,
        partial_bytes=partial_bytes,
    )


def read_audit_log(path: str | os.PathLike[str], *, check: bool = True) -> Iterator[AuditRecord]:
    """The records of the audit log in ``path``, in order (a partial last line left out).

    Parameters
    ----------
    path
        The log file.
    check
        Walk the chain as the records are read (see :func:`verify_audit_log`), and stop
        at the first bad line with an error. Without it, every line that is a record is
        read, the others skipped.

    Raises
    ------
    ConfigError
        If there is no file at ``path`` or it cannot be read.
    BrokenAuditLogError
        With ``check``, at the first bad line, once the records before it were read.
    """
    path = Path(path)
    chain = _Chain()
    partial: list[int] = []
    with _open(path) as file:
        try:
            for number, raw in _lines(file, partial, skip_long=not check):
                if check:
                    yield chain.check(number, raw)
                    continue
                try:
                    yield _parse(number, raw)[0]
                except _Broken:
                    continue
        except _Broken as broken:
            raise BrokenAuditLogError(
                f"{path}: {broken.problem}", line=broken.line, seq=broken.seq
            ) from None
