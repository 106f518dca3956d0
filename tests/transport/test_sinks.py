from __future__ import annotations

import gc
import stat
from pathlib import Path

import numpy as np
import pytest

from corolla.transport import FileSink, MemorySink, _sinks
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


def _memory(view: memoryview) -> object:
    """The memory a payload was assembled in (the map under the sink's array)."""
    return view.obj.base.obj  # type: ignore[union-attr]


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
    memory = _memory(first)
    del first

    # Act: a payload of the same size while an array of the first one lives
    second = _assembled(b"b" * size)

    # Assert: the first payload's memory is untouched, and the second got its own
    assert bytes(decoded[:4]) == b"aaaa" and decoded.sum() == ord("a") * (size - 16)
    assert _memory(second) is not memory and bytes(second) == b"b" * size
    del decoded
    gc.collect()
    third = _assembled(b"c" * size)  # the first payload's memory, free at last
    assert _memory(third) is memory
    assert bytes(third) == b"c" * size


def test_the_memory_of_a_finished_payload_goes_to_the_next_one_of_its_size() -> None:
    size = REUSED_SINK_BYTES * 2
    first = _assembled(b"x" * size)
    memory = _memory(first)
    del first
    gc.collect()

    second = _assembled(b"y" * size)
    other_size = _assembled(b"z" * (size + 1))

    assert _memory(second) is memory
    assert bytes(second) == b"y" * size
    assert _memory(other_size) is not memory


def test_an_aborted_payload_s_memory_is_reused_and_small_payloads_need_none() -> None:
    sink = MemorySink(REUSED_SINK_BYTES)
    memory = sink._view.obj.base.obj  # type: ignore[union-attr]
    sink.abort()
    del sink
    gc.collect()

    assert _memory(_assembled(b"q" * REUSED_SINK_BYTES)) is memory
    small = _assembled(b"small")
    assert bytes(small) == b"small" and isinstance(small.obj, bytearray)


def test_free_memory_beyond_the_budget_is_let_go_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = _sinks._FreeBuffers(kept_bytes=3 * REUSED_SINK_BYTES)
    monkeypatch.setattr(_sinks, "_free_buffers", pool)
    sizes = [REUSED_SINK_BYTES + k for k in (1, 2, 3)]
    memories = {}
    for size in sizes:  # each payload gone before the next: the third lets the first go
        memories[size] = _memory(_assembled(b"k" * size))
    gc.collect()

    # The newest first: each check takes a buffer and gives it back (a miss adds one).
    kept = [s for s in reversed(sizes) if _memory(_assembled(b"n" * s)) is memories[s]]

    assert sorted(kept) == sizes[1:]
    del memories
    too_big = _assembled(b"b" * (4 * REUSED_SINK_BYTES))
    del too_big
    gc.collect()
    assert pool._bytes <= 3 * REUSED_SINK_BYTES
