"""Blob files: every size written exactly, with or without O_DIRECT, and nothing left over."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corolla.state import DirectoryBlobStore, _blob_file
from corolla.state._blob_file import DIRECT_ALIGNMENT, STAGING_BYTES, BlobFile, BlobWriters

# Sizes around the edges that matter: empty, one staging buffer, an aligned block.
EDGES = [
    0,
    1,
    DIRECT_ALIGNMENT - 1,
    STAGING_BYTES - 1,
    STAGING_BYTES,
    STAGING_BYTES + 1,
    STAGING_BYTES + DIRECT_ALIGNMENT,
    2 * STAGING_BYTES + 12_345,
]


def _payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


#: The writers of the blob files these tests write, as a store has them.
WRITERS = BlobWriters()


def _write(directory: Path, data: bytes, cuts: list[int], writers: BlobWriters = WRITERS) -> Path:
    file = BlobFile(directory, writers)
    view = memoryview(data)
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        file.write(view[start:cut])
        start = max(start, cut)
    file.write(view[start:])
    written = file.finish()
    kept = written.with_name(f"{written.name}.blob")
    os.replace(written, kept)  # as the store renames it into place
    file.abort()  # unclaims it; moved away, it stays
    return kept


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.sampled_from(EDGES) | st.integers(min_value=0, max_value=3 * STAGING_BYTES),
    cuts=st.lists(st.integers(min_value=0, max_value=3 * STAGING_BYTES), max_size=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_a_blob_file_holds_exactly_the_bytes_written(
    tmp_path: Path, size: int, cuts: list[int], seed: int
) -> None:
    data = _payload(size, seed)

    path = _write(tmp_path, data, cuts)

    assert path.read_bytes() == data  # the padding of the last block is gone
    path.unlink()


@pytest.mark.parametrize("size", [10, 3 * STAGING_BYTES + 7])
def test_a_file_system_that_refuses_o_direct_gets_buffered_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    # Arrange: an os.open that refuses O_DIRECT as tmpfs does (after creating the file).
    real_open = os.open
    direct = getattr(os, "O_DIRECT", 0) or 0o40000
    monkeypatch.setattr(_blob_file, "_O_DIRECT", direct)
    refused: list[str] = []

    def open_refusing_direct(path: Any, flags: int, mode: int = 0o777) -> int:
        if flags & direct:
            os.close(real_open(path, flags & ~direct, mode))
            refused.append(str(path))
            raise OSError(errno.EINVAL, "O_DIRECT not supported")
        return real_open(path, flags, mode)

    monkeypatch.setattr(_blob_file.os, "open", open_refusing_direct)
    data = _payload(size, 7)

    # Act
    path = _write(tmp_path, data, [size // 3])

    # Assert
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert len(refused) == (1 if size > STAGING_BYTES else 0)


def test_abort_removes_the_file(tmp_path: Path) -> None:
    file = BlobFile(tmp_path, WRITERS)
    file.write(memoryview(_payload(STAGING_BYTES + 5, 1)))  # a file now exists

    file.abort()

    assert list(tmp_path.iterdir()) == []


def test_a_closed_blob_file_refuses_writes(tmp_path: Path) -> None:
    file = BlobFile(tmp_path, WRITERS)
    file.write(memoryview(b"abc"))
    file.finish()

    with pytest.raises(ValueError, match="closed"):
        file.write(memoryview(b"more"))
    file.abort()


@pytest.mark.skipif(not getattr(os, "O_DIRECT", 0), reason="needs O_DIRECT")
@pytest.mark.parametrize("refused_from", [0, 1, 2])
def test_o_direct_writes_refused_after_the_open_go_on_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused_from: int
) -> None:
    # Arrange: a file system that opens with O_DIRECT but refuses the writes from the
    # ``refused_from``-th one on (the last one, padded, is the third here).
    real_write = os.pwrite
    direct_writes: list[int] = []
    written: list[tuple[int, int]] = []  # (offset, length) of the writes that went through

    def write_refusing_direct(fd: int, data: Any, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            direct_writes.append(len(data))
            if len(direct_writes) > refused_from:
                raise OSError(errno.EINVAL, "invalid argument")
        written.append((offset, len(data)))
        return real_write(fd, data, offset)

    monkeypatch.setattr(_blob_file.os, "pwrite", write_refusing_direct)
    data = _payload(2 * STAGING_BYTES + 1000, 3)

    # Act
    path = _write(tmp_path, data, [5, STAGING_BYTES + 3])

    # Assert: whatever was in flight when the first refusal came is written again, and
    # each byte of the blob was written once (the padding of a direct write aside)
    assert path.read_bytes() == data
    assert len(direct_writes) >= refused_from + 1
    assert sum(min(length, len(data) - offset) for offset, length in written) == len(data)


@pytest.mark.skipif(not getattr(os, "O_DIRECT", 0), reason="needs O_DIRECT")
def test_full_buffers_of_a_large_blob_are_written_from_the_writer_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.pwrite
    writers: list[tuple[str, int]] = []

    def recording_write(fd: int, data: Any, offset: int) -> int:
        writers.append((threading.current_thread().name, offset))
        return real_write(fd, data, offset)

    monkeypatch.setattr(_blob_file.os, "pwrite", recording_write)
    data = _payload(5 * STAGING_BYTES + 1, 4)

    path = _write(tmp_path, data, [])

    assert path.read_bytes() == data
    # The first buffer probes O_DIRECT and the last one is padded in the caller's thread.
    in_caller = [offset for name, offset in writers if not name.startswith("corolla-blob-write")]
    in_writers = [offset for name, offset in writers if name.startswith("corolla-blob-write")]
    assert in_caller == [0, 5 * STAGING_BYTES]
    assert sorted(in_writers) == [k * STAGING_BYTES for k in range(1, 5)]


@pytest.mark.skipif(not getattr(os, "O_DIRECT", 0), reason="needs O_DIRECT")
def test_a_write_that_fails_in_flight_is_raised_and_abort_removes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.pwrite

    def write_failing_in_flight(fd: int, data: Any, offset: int) -> int:
        if threading.current_thread().name.startswith("corolla-blob-write"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data, offset)

    monkeypatch.setattr(_blob_file.os, "pwrite", write_failing_in_flight)
    file = BlobFile(tmp_path, WRITERS)

    with pytest.raises(OSError, match="No space left"):
        file.write(memoryview(_payload(4 * STAGING_BYTES, 5)))
        file.finish()
    file.abort()

    assert list(tmp_path.iterdir()) == []


def _free_slots(writers: BlobWriters = WRITERS) -> int:
    """How many writes the store could have in flight now."""
    taken = 0
    while writers.slots.acquire(blocking=False):
        taken += 1
    for _ in range(taken):
        writers.slots.release()
    return taken


@pytest.mark.skipif(not getattr(os, "O_DIRECT", 0), reason="needs O_DIRECT")
@pytest.mark.parametrize("slots", [0, 1, 2])
def test_writes_in_flight_are_bounded_for_the_whole_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slots: int
) -> None:
    # Arrange: ``slots`` writes in flight allowed (0: the only slot is taken elsewhere),
    # and writes slow enough to pile up
    writers = BlobWriters(in_flight_total=max(slots, 1))
    if slots == 0:
        assert writers.slots.acquire(blocking=False)
    real_write = os.pwrite
    lock = threading.Lock()
    in_flight = [0]
    most = [0]
    in_writers = [0]

    def slow_write(fd: int, data: Any, offset: int) -> int:
        writer = threading.current_thread().name.startswith("corolla-blob-write")
        with lock:
            in_flight[0] += writer
            most[0] = max(most[0], in_flight[0])
            in_writers[0] += writer
        time.sleep(0.05)
        with lock:
            in_flight[0] -= writer
        return real_write(fd, data, offset)

    monkeypatch.setattr(_blob_file.os, "pwrite", slow_write)
    data = _payload(6 * STAGING_BYTES + 3, 6)

    # Act
    path = _write(tmp_path, data, [STAGING_BYTES // 2], writers)
    writers.stop()

    # Assert: the first and last buffers are written by the caller, the 5 others in
    # flight if a slot allows
    assert path.read_bytes() == data
    assert most[0] == slots
    assert in_writers[0] == (0 if slots == 0 else 5)
    assert _free_slots(writers) == slots


def test_every_slot_is_free_once_blob_files_are_done(tmp_path: Path) -> None:
    for size in (STAGING_BYTES * 3, STAGING_BYTES * 9 + 1):
        _write(tmp_path, _payload(size, size), [])
    file = BlobFile(tmp_path, WRITERS)
    file.write(memoryview(_payload(STAGING_BYTES * 4, 2)))
    file.abort()

    assert _free_slots() == _blob_file.WRITES_IN_FLIGHT_TOTAL


@pytest.mark.skipif(not getattr(os, "O_DIRECT", 0), reason="needs O_DIRECT")
def test_a_store_s_writer_threads_end_when_it_closes(tmp_path: Path) -> None:
    # Arrange: a store that wrote a blob large enough for writes in flight
    before = set(threading.enumerate())
    store = DirectoryBlobStore(tmp_path / "blobs")
    store.put(_payload(6 * STAGING_BYTES, 3))
    started = {t for t in set(threading.enumerate()) - before if t.name.startswith("corolla")}

    # Act
    store.close()

    # Assert: it had threads of its own, and none is left
    assert started
    assert not [t for t in started if t.is_alive()]
