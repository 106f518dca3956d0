"""The audit log: written durably and in order by many threads, and any edit, deletion,
insertion or reordering of a record found by its verification, which names the first
bad record; records cut off at the end, or a rewrite, found against a head noted
elsewhere."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from corolla.core import ConfigError
from corolla.trust import (
    GENESIS,
    AuditLog,
    AuditRecord,
    BrokenAuditLogError,
    _audit,
    read_audit_log,
    record_hash,
    verify_audit_log,
)

_FIELDS = ("seq", "time", "kind", "actor", "data", "prev", "hash")

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_data = st.dictionaries(st.text(max_size=8), _json, max_size=4)
_entries = st.lists(
    st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=6), _data),
    min_size=2,
    max_size=7,
)
_hex = st.text("0123456789abcdef", min_size=64, max_size=64)


def _counter() -> Iterator[float]:
    return (1_800_000_000.0 + n / 8 for n in itertools.count())


def _write(path: Path, entries: list[tuple[str, str, dict[str, Any]]]) -> list[bytes]:
    """A log of ``entries``, a record each; its lines (with their newlines)."""
    ticks = _counter()
    with AuditLog(path, clock=lambda: next(ticks)) as log:
        for kind, actor, data in entries:
            log.record(kind, actor, data)
    return path.read_bytes().splitlines(keepends=True)


def _line(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _forged(seq: int, prev: str, data: dict[str, Any]) -> bytes:
    """A record that chains to ``prev`` as the log would write it."""
    fields = {"seq": seq, "time": 1.0, "kind": "run.submit", "actor": "", "data": data}
    fields["prev"] = prev
    return _line({**fields, "hash": record_hash(prev, fields)}) + b"\n"


_new_values = {
    "seq": st.integers(min_value=-3, max_value=40),
    "time": st.floats(allow_nan=False) | st.integers(),
    "kind": st.text(max_size=12),
    "actor": st.text(max_size=6),
    "data": _data,
    "prev": _hex,
    "hash": _hex,
}


@st.composite
def _tampering(draw: st.DrawFn, lines: list[bytes]) -> tuple[str, list[bytes], int | None]:
    """One change of the log's lines: what it was, the lines after it, and the line that
    verification must name (None where the chain alone cannot tell)."""
    count = len(lines)
    how = draw(st.sampled_from(["edit", "delete", "insert", "forge", "swap"]))
    changed = list(lines)
    if how == "edit":
        at = draw(st.integers(0, count - 1))
        field = draw(st.sampled_from(_FIELDS))
        record = json.loads(lines[at])
        value = draw(_new_values[field])
        assume(_line({field: value}) != _line({field: record[field]}))
        record[field] = value
        changed[at] = _line(record) + b"\n"
        return f"edit {field} of record {at + 1}", changed, at + 1
    if how == "delete":
        at = draw(st.integers(0, count - 1))
        del changed[at]
        return f"delete record {at + 1}", changed, None if at == count - 1 else at + 1
    if how == "insert":  # anything: it does not chain
        at = draw(st.integers(0, count))
        fields = {f: draw(_new_values[f]) for f in _FIELDS}
        changed.insert(at, _line(fields) + b"\n")
        return f"insert a record at line {at + 1}", changed, at + 1
    if how == "forge":  # a record chained to the one before: the one after no longer fits
        at = draw(st.integers(0, count))
        prev = GENESIS if at == 0 else json.loads(lines[at - 1])["hash"]
        changed.insert(at, _forged(at + 1, prev, draw(_data)))
        return f"forge a record at line {at + 1}", changed, None if at == count else at + 2
    first, second = sorted(
        draw(st.lists(st.integers(0, count - 1), min_size=2, max_size=2, unique=True))
    )
    changed[first], changed[second] = changed[second], changed[first]
    return f"swap records {first + 1} and {second + 1}", changed, first + 1


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=_entries, data=st.data())
def test_verification_names_the_first_record_any_single_change_affects(
    tmp_path_factory: pytest.TempPathFactory, entries: list[Any], data: st.DataObject
) -> None:
    # Arrange: a log, and one change of it
    path = tmp_path_factory.mktemp("audit") / "audit.log"
    lines = _write(path, entries)
    assert verify_audit_log(path).ok
    what, changed, bad_line = data.draw(_tampering(lines), label="change")
    path.write_bytes(b"".join(changed))

    # Act
    verdict = verify_audit_log(path)

    # Assert: the first line the change affects is named, every record before it intact
    if bad_line is None:  # the last record deleted, or a forged one appended
        assert verdict.ok, what
        return
    assert not verdict.ok, what
    assert verdict.line == bad_line, (what, verdict.problem)
    assert verdict.records == bad_line - 1
    assert f"record {verdict.seq}" in verdict.problem or f"line {bad_line} " in verdict.problem
    if verdict.seq is not None:
        assert verdict.seq == json.loads(changed[bad_line - 1])["seq"]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=_entries)
def test_a_log_reads_back_the_records_it_was_given(
    tmp_path_factory: pytest.TempPathFactory, entries: list[Any]
) -> None:
    # Arrange
    path = tmp_path_factory.mktemp("audit") / "audit.log"
    lines = _write(path, entries)

    # Act
    records = list(read_audit_log(path))
    verdict = verify_audit_log(path)

    # Assert: the same records, each line as a record writes itself, the chain intact
    assert [(r.kind, r.actor, r.data) for r in records] == [tuple(e) for e in entries]
    assert [r.seq for r in records] == list(range(1, len(entries) + 1))
    assert [r.line() for r in records] == lines
    assert all(r.hash == record_hash(r.prev, r.fields()) for r in records)
    assert verdict.ok and verdict.records == len(entries)
    assert verdict.head == (records[-1].seq, records[-1].hash)


def test_an_edited_record_is_named(tmp_path: Path) -> None:
    # Arrange: the record of a run's submission, its bundle hash changed
    path = tmp_path / "audit.log"
    lines = _write(path, [("run.submit", "", {"run_id": n, "bundle": "a" * 64}) for n in range(5)])
    lines[2] = lines[2].replace(b'"bundle":"a', b'"bundle":"b')
    path.write_bytes(b"".join(lines))

    # Act
    verdict = verify_audit_log(path)

    # Assert
    assert not verdict.ok
    assert verdict.problem == "record 3: its hash does not match its content (edited?)"
    assert (verdict.line, verdict.seq, verdict.records) == (3, 3, 2)
    assert verdict.head == (2, json.loads(lines[1])["hash"])
    with pytest.raises(BrokenAuditLogError, match="record 3: its hash") as raised:
        list(read_audit_log(path))
    assert (raised.value.line, raised.value.seq) == (3, 3)
    assert "record 3: its hash" in str(verdict.error())


def test_a_deleted_record_and_a_line_that_is_no_record_are_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    lines = _write(path, [("node.join", "", {"node_id": n}) for n in range(4)])

    path.write_bytes(b"".join(lines[:1] + lines[2:]))
    deleted = verify_audit_log(path)
    path.write_bytes(b"".join([*lines[:3], b"not json\n", *lines[3:]]))
    junk = verify_audit_log(path)
    path.write_bytes(lines[0].replace(b":", b": ", 1) + b"".join(lines[1:]))
    respaced = verify_audit_log(path)

    assert deleted.problem == "record 3 follows record 1 (deleted or reordered?)"
    assert junk.problem.startswith("line 4 is not an audit record (")
    assert respaced.problem == "record 1 is not written as the log writes it (edited?)"


def test_a_torn_last_line_is_cut_off_on_reopening_and_the_log_verifies(tmp_path: Path) -> None:
    # Arrange: a crash while the fourth record was being written
    path = tmp_path / "audit.log"
    lines = _write(path, [("message.sent", "", {"n": n}) for n in range(4)])
    path.write_bytes(b"".join(lines[:3]) + lines[3][:25])

    # Act
    before = verify_audit_log(path)
    with AuditLog(path) as log:
        reopened_head = log.head
        log.record("link.start")
    after = verify_audit_log(path)

    # Assert: the partial line is no record; the log goes on from the last whole one
    assert before.ok and before.records == 3 and before.partial_bytes == 25
    assert reopened_head == before.head
    assert after.ok and after.records == 4 and after.partial_bytes == 0
    assert [r.kind for r in read_audit_log(path)][-1] == "link.start"


def test_a_torn_line_longer_than_what_reopening_reads_at_once_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: a partial line of 100 bytes, read back 16 bytes at a time
    monkeypatch.setattr(_audit, "_TAIL_BYTES", 16)
    path = tmp_path / "audit.log"
    lines = _write(path, [("node.join", "", {"node_id": n}) for n in range(3)])
    path.write_bytes(b"".join(lines) + b"x" * 100)

    # Act
    with AuditLog(path) as log:
        head = log.head

    # Assert
    assert path.read_bytes() == b"".join(lines)
    assert head == (3, json.loads(lines[-1])["hash"])


def test_records_from_eight_threads_form_one_chain_holding_each_once(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "audit.log"
    seqs: list[int] = []
    lock = threading.Lock()

    def write(log: AuditLog, thread: int) -> None:
        for n in range(40):
            if n % 4 == 3:
                got = log.record_many(
                    [("reply.received", "", {"thread": thread, "n": n, "k": k}) for k in range(3)]
                )
            else:
                got = [log.record("message.sent", "", {"thread": thread, "n": n, "k": 0})]
            with lock:
                seqs.extend(got)

    # Act
    with AuditLog(path) as log:
        threads = [threading.Thread(target=write, args=(log, t)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    verdict = verify_audit_log(path)
    records = list(read_audit_log(path))

    # Assert: every record once, in one unbroken chain; each thread's in its order
    written = [(r.data["thread"], r.data["n"], r.data["k"]) for r in records]
    expected = {
        (t, n, k) for t in range(8) for n in range(40) for k in range(3 if n % 4 == 3 else 1)
    }
    assert verdict.ok and verdict.records == len(expected)
    assert sorted(written) == sorted(expected)
    assert sorted(seqs) == list(range(1, len(expected) + 1))
    for thread in range(8):
        mine = [(n, k) for t, n, k in written if t == thread]
        assert mine == sorted(mine)


def test_a_head_noted_earlier_finds_records_cut_off_and_a_rewrite(tmp_path: Path) -> None:
    # Arrange: a head noted after 6 records; the log grows to 9
    path = tmp_path / "audit.log"
    entries = [("run.submit", "", {"run_id": n}) for n in range(9)]
    lines = _write(path, entries)
    noted = (6, json.loads(lines[5])["hash"])

    # Act
    grown = verify_audit_log(path, head=noted)
    path.write_bytes(b"".join(lines[:4]))  # cut after record 4
    cut = verify_audit_log(path, head=noted)
    cut_alone = verify_audit_log(path)
    # Rewritten from record 3 on, every hash computed again: the chain alone holds.
    rewritten = [*entries[:2], ("run.submit", "", {"run_id": 99}), *entries[3:]]
    path.unlink()
    _write(path, rewritten)
    rewrite_alone = verify_audit_log(path)
    rewrite = verify_audit_log(path, head=noted)

    # Assert
    assert grown.ok and grown.records == 9
    assert cut_alone.ok
    assert not cut.ok and cut.seq == 6 and cut.line is None
    assert (
        cut.problem
        == "the log ends at record 4, before the expected head, record 6 (records cut off?)"
    )
    assert rewrite_alone.ok
    assert not rewrite.ok and rewrite.line == 6
    assert "the log was rewritten from record 6 or before" in rewrite.problem


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"nested": {1: "a"}}, "a key that is no string"),
        ({"value": float("nan")}, "not JSON"),
        ({"name": "\udc80"}, "not JSON"),
        ({"array": object()}, "not JSON"),
        ({"reason": "x" * (1 << 20)}, "a record holds at most"),
    ],
)
def test_a_record_that_cannot_be_read_back_the_same_is_refused_and_its_batch_too(
    tmp_path: Path, data: dict[Any, Any], why: str
) -> None:
    # Arrange
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        log.record("link.start")
        before = path.read_bytes()

        # Act
        with pytest.raises(ConfigError, match=why):
            log.record_many([("ok", "", {}), ("bad", "", data)])
        log.record("link.stop")

    # Assert: the batch left nothing, the chain goes on
    assert path.read_bytes().startswith(before)
    assert [r.kind for r in read_audit_log(path)] == ["link.start", "link.stop"]
    assert verify_audit_log(path).ok


def test_a_closed_log_refuses_records(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.close()
    log.close()

    with pytest.raises(ConfigError, match="is closed"):
        log.record("link.start")


def test_reading_without_checking_skips_lines_that_are_no_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    lines = _write(path, [("node.join", "", {"node_id": n}) for n in range(3)])
    path.write_bytes(lines[0] + b"{}\n" + b"".join(lines[1:]))

    records = list(read_audit_log(path, check=False))

    assert [r.data["node_id"] for r in records] == [0, 1, 2]
    with pytest.raises(BrokenAuditLogError, match="line 2 is not an audit record"):
        list(read_audit_log(path))


def test_verifying_what_is_no_log_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no audit log at"):
        verify_audit_log(tmp_path / "missing.log")
    with pytest.raises(ConfigError, match="is a directory"):
        verify_audit_log(tmp_path)
    for head in [(1, "z"), (0, "f" * 64), (-1, GENESIS)]:
        with pytest.raises(ConfigError, match="SEQ:HASH"):
            verify_audit_log(tmp_path / "missing.log", head=head)


def test_an_empty_log_is_intact(tmp_path: Path) -> None:
    (tmp_path / "audit.log").touch()

    verdict = verify_audit_log(tmp_path / "audit.log")

    assert verdict.ok and verdict.records == 0 and verdict.head == (0, GENESIS)
    assert verdict.head_text == f"0:{GENESIS}"
    assert verify_audit_log(tmp_path / "audit.log", head=verdict.head).ok


def test_a_record_line_is_its_canonical_json(tmp_path: Path) -> None:
    record = AuditRecord(1, 2.5, "node.join", "", {"b": 1, "a": "é"}, GENESIS, "f" * 64)

    assert record.line() == _line(record.to_json()) + b"\n"
