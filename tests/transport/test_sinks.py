from __future__ import annotations

import stat
from pathlib import Path

import pytest

from corolla.transport import FileSink, MemorySink


def test_memory_sink_returns_what_was_written_read_only() -> None:
    sink = MemorySink(6)
    sink.write(0, b"abc")
    sink.write(3, memoryview(b"def"))

    view = sink.finish()

    assert bytes(view) == b"abcdef"
    assert view.readonly


def test_file_sink_maps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.part"
    sink = FileSink(path, 6, durable=True)
    sink.write(0, b"abc")
    sink.write(3, b"def")

    view = sink.finish()

    assert bytes(view) == b"abcdef"
    assert view.readonly
    assert path.read_bytes() == b"abcdef"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_sink_preallocates_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "big.part"

    sink = FileSink(path, 3 * 2**30)  # 3 GiB, beyond what one protobuf message may hold

    assert path.stat().st_size == 3 * 2**30
    sink.write(3 * 2**30 - 3, b"end")
    view = sink.finish()
    assert bytes(view[-3:]) == b"end"
    assert view[0] == 0


def test_file_sink_abort_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.part"
    sink = FileSink(path, 10)
    sink.write(0, b"abc")

    sink.abort()

    assert not path.exists()


def test_empty_payloads() -> None:
    assert bytes(MemorySink(0).finish()) == b""


def test_empty_file_payload(tmp_path: Path) -> None:
    assert bytes(FileSink(tmp_path / "e", 0).finish()) == b""


def test_memory_sink_abort_releases_the_buffer() -> None:
    sink = MemorySink(10)

    sink.abort()

    with pytest.raises(ValueError):
        sink.write(0, b"x")
