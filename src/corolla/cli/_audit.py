"""``corolla audit verify PATH``: check an audit log's hash chain; ``corolla audit export
PATH``: its records as JSON lines.

PATH is an audit log, or a state directory holding one (``audit.log``: a link's, or a
node's). ``verify`` exits with 0 when the log is intact, 1 when it is not (the first bad
record named on standard error), 2 when PATH holds no log or an option is malformed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from ..core import ConfigError
from ..trust import AuditLog, BrokenAuditLogError, read_audit_log, verify_audit_log

__all__ = ["add_audit_parser", "audit_log_path", "parse_head"]


def add_audit_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "audit",
        help="verify or export an audit log",
        description="Check an audit log's hash chain, or write its records as JSON lines. "
        "PATH is an audit log, or a link's or a node's state directory (its audit.log).",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="check that no record was edited, deleted, inserted or reordered",
        description="Walk the log's hash chain and name its first bad record (exit status "
        "1). The chain cannot show records cut off at the end, nor a rewrite of every "
        "record from some point on: note the head it prints somewhere else, and give it "
        "to --head later.",
    )
    verify.add_argument("path", type=Path, metavar="PATH", help="the log or a state directory")
    verify.add_argument(
        "--head",
        metavar="SEQ:HASH",
        help="a head printed earlier: the log must still hold that record, with that hash",
    )
    verify.set_defaults(handler=verify_command)
    export = actions.add_parser(
        "export",
        help="write the log's records as JSON lines",
        description="Write every record as one JSON object a line (seq, time, kind, actor, "
        "data, prev, hash), once the log is verified.",
    )
    export.add_argument("path", type=Path, metavar="PATH", help="the log or a state directory")
    export.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write here, not to standard output"
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="export a log that does not verify: every line that is a record",
    )
    export.set_defaults(handler=export_command)


def audit_log_path(path: Path) -> Path:
    """The audit log that ``path`` names: the file itself, or a state directory's.

    Raises
    ------
    ConfigError
        If there is nothing at ``path``, or a directory without an audit log.
    """
    if path.is_dir():
        log = path / AuditLog.FILE
        if not log.is_file():
            raise ConfigError(
                f"{path} holds no audit log ({AuditLog.FILE}): give a link's or a node's "
                "state directory, or the log file"
            )
        return log
    if not path.exists():
        raise ConfigError(
            f"no audit log at {path}: give the log file, or the state directory holding "
            f"{AuditLog.FILE}"
        )
    return path


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH``, as ``corolla audit verify`` prints a head.

    Raises
    ------
    ConfigError
        If ``text`` is not a seq and 64 lowercase hex digits.
    """
    seq, _, digest = text.strip().partition(":")
    if not seq.isdecimal() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError(
            f"--head {text!r}: expected SEQ:HASH, a record's seq and its 64 hex digit hash, "
            "as `corolla audit verify` prints the head"
        )
    return int(seq), digest


def verify_command(args: argparse.Namespace, console: Console) -> int:
    head = None if args.head is None else parse_head(args.head)
    path = audit_log_path(args.path)
    verdict = verify_audit_log(path, head=head)
    if not verdict.ok:
        if verdict.records:
            console.print(
                f"{path}: records 1 to {verdict.records} intact; head {verdict.head_text}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        raise verdict.error()
    records = "1 record" if verdict.records == 1 else f"{verdict.records} records"
    lines = [f"{path}: intact, {records}"]
    if head is not None and head[0]:
        lines.append(f"holds record {head[0]} with the expected hash")
    lines.append(f"head: {verdict.head_text}")
    if verdict.partial_bytes:
        lines.append(
            f"a partial last line ({verdict.partial_bytes} bytes, a record being written when "
            "its process stopped, never acknowledged) is no record; the log cuts it off when "
            "it is next opened"
        )
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0


def export_command(args: argparse.Namespace, console: Console) -> int:
    path = audit_log_path(args.path)
    if args.output is not None and args.output.exists() and _same_file(args.output, path):
        raise ConfigError(f"-o {args.output} is the audit log itself; write elsewhere")
    verdict = verify_audit_log(path)
    if not verdict.ok:
        if not args.force:
            raise BrokenAuditLogError(
                f"{path}: {verdict.problem}; nothing exported (--force exports it anyway)",
                line=verdict.line,
                seq=verdict.seq,
            )
        print(f"warning: {path}: {verdict.problem}; exporting anyway", file=sys.stderr)
    if args.output is None:
        _export(path, sys.stdout.buffer, check=not args.force)
        sys.stdout.flush()
        return 0
    with args.output.open("wb") as out:
        count = _export(path, out, check=not args.force)
    records = "1 record" if count == 1 else f"{count} records"
    print(f"wrote {records} to {args.output}", file=sys.stderr)
    return 0


def _export(path: Path, out: IO[bytes], *, check: bool) -> int:
    count = 0
    for record in read_audit_log(path, check=check):
        out.write(record.line())
        count += 1
    return count


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
