from __future__ import annotations

import gc
import stat
from pathlib import Path

import numpy as np
import pytest

from corolla.transport import FileSink, MemorySink
from corolla.transport._sinks import REUSED_SINK_BYTES


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


def _address(view: memoryview) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).__array_interface__["data"][0])


def _assembled(data: bytes) -> memoryview:
    sink = MemorySink(len(data))
    half = len(data) // 2
    sink.write(0, data[:half])
    sink.write(half, data[half:])
    return sink.finish()


def test_a_large_payload_s_memory_is_reused_once_nothing_holds_the_last_one() -> None:
    size = REUSED_SINK_BYTES + 4096
    first = _assembled(b"a" * size)
    decoded = np.frombuffer(first[16:], dtype=np.uint8)  # zero-copy, as decode_array does
    address = _address(first)
    del first

    # Act: a payload of the same size while an array of the first one lives
    second = _assembled(b"b" * size)

    # Assert: the first payload's memory is untouched, and the second got its own
    assert bytes(decoded[:4]) == b"aaaa" and decoded.sum() == ord("a") * (size - 16)
    assert _address(second) != address and bytes(second) == b"b" * size
    del decoded
    gc.collect()
    third = _assembled(b"c" * size)  # the first payload's memory, free at last
    assert _address(third) == address
    assert bytes(third) == b"c" * size


def test_the_memory_of_a_finished_payload_goes_to_the_next_one_of_its_size() -> None:
    size = REUSED_SINK_BYTES * 2
    first = _assembled(b"x" * size)
    address = _address(first)
    del first
    gc.collect()

    second = _assembled(b"y" * size)
    other_size = _assembled(b"z" * (size + 1))

    assert _address(second) == address
    assert bytes(second) == b"y" * size
    assert _address(other_size) != address


def test_an_aborted_payload_s_memory_is_reused_and_small_payloads_need_none() -> None:
    sink = MemorySink(REUSED_SINK_BYTES)
    address = _address(sink._view)
    sink.abort()
    del sink
    gc.collect()

    assert _address(_assembled(b"q" * REUSED_SINK_BYTES)) == address
    assert bytes(_assembled(b"small")) == b"small"
