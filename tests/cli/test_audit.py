"""``corolla audit verify`` and ``corolla audit export``: exit statuses, the first bad
record named, JSON lines out, a state directory as PATH."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from corolla.cli._main import main
from corolla.trust import AuditLog, verify_audit_log

from .commands import source_environment


def _log(directory: Path, count: int = 4) -> Path:
    path = directory / AuditLog.FILE
    with AuditLog(path) as log:
        log.record_many([("node.join", "", {"node_id": n}) for n in range(count)])
    return path


def _edit_third(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"node_id":2', b'"node_id":9')
    path.write_bytes(b"".join(lines))


def test_an_intact_log_verifies_and_its_head_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _log(tmp_path)

    status = main(["audit", "verify", str(path)])

    out = capsys.readouterr().out
    assert status == 0
    assert f"{path}: intact, 4 records" in out
    assert f"head: {verify_audit_log(path).head_text}" in out


def test_a_state_directory_is_verified_by_its_audit_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _log(tmp_path)

    status = main(["audit", "verify", str(tmp_path)])

    assert status == 0
    assert f"{path}: intact" in capsys.readouterr().out


def test_an_edited_log_fails_naming_its_first_bad_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _log(tmp_path)
    _edit_third(path)

    status = main(["audit", "verify", str(path)])

    captured = capsys.readouterr()
    assert status == 1
    assert "record 3: its hash does not match its content (edited?)" in captured.err
    assert "records 1 to 2 intact" in captured.out


def test_a_head_noted_earlier_finds_a_log_cut_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Arrange: the head of 4 records noted, then the last record cut off
    path = _log(tmp_path)
    head = verify_audit_log(path).head_text
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:3]))

    # Act
    plain = main(["audit", "verify", str(path)])
    checked = main(["audit", "verify", str(path), "--head", head])

    # Assert
    assert plain == 0
    assert checked == 1
    assert "the log ends at record 3, before the expected head, record 4" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "{state}/missing.log"], "no audit log at"),
        (["verify", "{empty}"], "holds no audit log (audit.log)"),
        (["verify", "{state}", "--head", "4"], "expected SEQ:HASH"),
        (["export", "{state}/audit.log", "-o", "{state}/audit.log"], "the audit log itself"),
    ],
)
def test_what_is_no_log_or_no_head_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # Arrange: a state directory with a log, and an empty one
    state, empty = tmp_path / "state", tmp_path / "empty"
    state.mkdir()
    empty.mkdir()
    _log(state)

    # Act
    status = main(["audit", *(a.format(state=state, empty=empty) for a in args)])

    # Assert: a usage error, the log untouched
    assert status == 2
    assert message in capsys.readouterr().err
    assert verify_audit_log(state / "audit.log").records == 4


def test_export_writes_every_record_as_a_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _log(tmp_path)
    output = tmp_path / "out.jsonl"

    status = main(["audit", "export", str(tmp_path), "-o", str(output)])

    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert status == 0
    assert [r["data"]["node_id"] for r in records] == [0, 1, 2, 3]
    assert set(records[0]) == {"seq", "time", "kind", "actor", "data", "prev", "hash"}
    assert output.read_bytes() == path.read_bytes()
    assert "wrote 4 records" in capsys.readouterr().err


def test_export_refuses_a_broken_log_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _log(tmp_path)
    _edit_third(path)
    output = tmp_path / "out.jsonl"

    refused = main(["audit", "export", str(path), "-o", str(output)])
    refused_err = capsys.readouterr().err
    forced = main(["audit", "export", str(path), "-o", str(output), "--force"])

    assert refused == 1
    assert "record 3: its hash does not match" in refused_err
    assert "nothing exported" in refused_err
    assert forced == 0
    assert [json.loads(line)["data"]["node_id"] for line in output.read_text().splitlines()] == [
        0,
        1,
        9,
        3,
    ]


def test_export_writes_to_standard_output_as_a_command(tmp_path: Path) -> None:
    path = _log(tmp_path, count=3)

    done = subprocess.run(
        [sys.executable, "-m", "corolla", "audit", "export", str(path)],
        capture_output=True,
        timeout=120,
        env=source_environment(),
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == path.read_bytes()
