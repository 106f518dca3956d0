"""Blob stores after faults: partial uploads a crash left, blobs whose bytes went bad, and
the owner-only modes of the blob directory."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from corolla.state import (
    BlobIntegrityError,
    BlobStore,
    DirectoryBlobStore,
    MemoryBlobStore,
    _blobs,
)
from corolla.state._blob_file import STAGING_BYTES, BlobFile, BlobWriters, remove_unclaimed

from .doubles import digest

#: Larger than one staging buffer: its file exists before its last chunk is given.
LARGE = STAGING_BYTES + 4096


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _blob_path(root: Path, blob_hash: str) -> Path:
    return root / blob_hash[:2] / blob_hash


def _damage(path: Path, *, truncate: bool = False) -> None:
    data = bytearray(path.read_bytes())
    if truncate:
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF
    path.chmod(0o600)
    path.write_bytes(bytes(data))


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


# -- partial uploads ---------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL are POSIX")
def test_an_upload_cut_by_a_sigkill_is_removed_when_the_store_next_opens(tmp_path: Path):
    # Arrange: a process killed while its upload's file is half written
    script = textwrap.dedent(
        f"""
        import sys
        from corolla.state import DirectoryBlobStore

        def chunks():
            yield bytes({LARGE})
            print("writing", flush=True)
            sys.stdin.read()  # until killed
            yield b"never"

        DirectoryBlobStore({str(tmp_path)!r}).put_stream(chunks())
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing", child.stderr
    finally:
        child.kill()
        child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    left = list((tmp_path / "tmp").iterdir())
    assert len(left) == 1 and left[0].stat().st_size > 0

    # Act
    store = DirectoryBlobStore(tmp_path)

    # Assert
    assert list((tmp_path / "tmp").iterdir()) == []
    assert list(store.stored()) == []


def test_leftovers_of_any_name_are_removed_when_the_store_opens(tmp_path: Path):
    DirectoryBlobStore(tmp_path)
    (tmp_path / "tmp" / "put-0123456789abcdef").write_bytes(b"half an upload")
    (tmp_path / "tmp" / "something-else").write_bytes(b"")

    DirectoryBlobStore(tmp_path)

    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_upload_in_progress_survives_another_store_opening_the_directory(tmp_path: Path):
    # Arrange: an upload whose file exists, waiting for its last chunk
    store = DirectoryBlobStore(tmp_path)
    first = os.urandom(LARGE)
    written, go_on = threading.Event(), threading.Event()
    stored: list[str] = []

    def chunks() -> Iterator[bytes]:
        yield first
        written.set()
        go_on.wait()
        yield b"the end"

    upload = threading.Thread(target=lambda: stored.append(store.put_stream(chunks())))
    upload.start()
    try:
        assert written.wait(60)
        in_progress = list((tmp_path / "tmp").iterdir())

        # Act: another store (a run's ServerApp, in its own process) opens the directory
        DirectoryBlobStore(tmp_path)

        # Assert
        assert list((tmp_path / "tmp").iterdir()) == in_progress
    finally:
        go_on.set()
        upload.join()
    assert stored == [digest(first + b"the end")]
    assert bytes(store.open(stored[0])) == first + b"the end"


@pytest.mark.parametrize("sweeper", ["removes it", "holds it"])
def test_a_blob_file_swept_as_it_is_created_is_written_under_another_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sweeper: str
):
    # Arrange: a sweeping store gets to the first new file between its creation and
    # its writer's claim, and removes it, or is still holding it
    real_create = BlobFile._create
    created: list[Path] = []
    held: list[int] = []

    def create_then_sweep(self: BlobFile, path: Path, direct: bool) -> int:
        fd = real_create(self, path, direct)
        created.append(path)
        if len(created) == 1:
            if sweeper == "removes it":
                assert remove_unclaimed(tmp_path) == 1
            else:
                held.append(os.open(path, os.O_RDONLY))
                fcntl.flock(held[0], fcntl.LOCK_EX)
        return fd

    monkeypatch.setattr(BlobFile, "_create", create_then_sweep)
    data = os.urandom(LARGE)

    # Act
    file = BlobFile(tmp_path, BlobWriters())
    file.write(memoryview(data))
    path = file.finish()

    # Assert
    assert path == created[1] != created[0]
    assert path.read_bytes() == data
    file.abort()
    for fd in held:
        os.close(fd)


# -- blobs gone bad ----------------------------------------------------------------------


@pytest.mark.parametrize("truncate", [False, True], ids=["bit flipped", "truncated"])
def test_an_upload_of_a_damaged_blob_replaces_it(tmp_path: Path, truncate: bool):
    store = DirectoryBlobStore(tmp_path)
    data = os.urandom(LARGE)
    blob_hash = store.put(data)
    _damage(_blob_path(tmp_path, blob_hash), truncate=truncate)

    again = store.put_stream(iter([data[:1000], data[1000:]]), expected_hash=blob_hash)

    assert again == blob_hash
    assert bytes(store.open(blob_hash)) == data
    assert store.verify(blob_hash) is True
    assert list((tmp_path / "tmp").iterdir()) == []


def test_whole_content_is_written_again_over_a_stored_file_of_another_size(tmp_path: Path):
    store = DirectoryBlobStore(tmp_path)
    blob_hash = store.put(b"the global model of round 3")
    _damage(_blob_path(tmp_path, blob_hash), truncate=True)

    store.put(b"the global model of round 3")

    assert bytes(store.open(blob_hash)) == b"the global model of round 3"


@pytest.fixture(params=["directory", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "directory":
        return DirectoryBlobStore(tmp_path / "blobs")
    return MemoryBlobStore()


def test_verify_keeps_a_blob_that_hashes_to_its_name(store: BlobStore):
    blob_hash = store.put(b"sound")

    assert store.verify(blob_hash) is True
    assert bytes(store.open(blob_hash)) == b"sound"


def test_verify_of_a_missing_blob_is_false(store: BlobStore):
    assert store.verify(digest(b"never stored")) is False


def test_verify_removes_a_damaged_blob_so_the_next_upload_stores_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    # Arrange: the same size, so only reading it again can tell
    store = DirectoryBlobStore(tmp_path)
    data = os.urandom(10_000)
    blob_hash = store.put(data)
    _damage(_blob_path(tmp_path, blob_hash))
    assert store.put(data) == blob_hash and store.exists(blob_hash)  # not noticed

    # Act
    with caplog.at_level(logging.WARNING, "corolla.state"):
        verified = store.verify(blob_hash)

    # Assert
    assert verified is False
    assert not store.exists(blob_hash)  # what StatArrays reports: upload it
    assert blob_hash in caplog.text
    store.put(data)
    assert bytes(store.open(blob_hash)) == data


def test_verify_of_a_memory_blob_whose_buffer_changed_removes_it():
    store = MemoryBlobStore()
    buffer = bytearray(b"downloaded and checked")
    blob_hash = store.put_stream([buffer], expected_hash=digest(bytes(buffer)), verified=True)
    buffer[0] ^= 0xFF  # the caller broke its promise

    assert store.verify(blob_hash) is False
    assert not store.exists(blob_hash)


def test_verify_leaves_a_good_copy_uploaded_while_it_read_the_damaged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Arrange: while verify reads the damaged file, an upload replaces it
    store = DirectoryBlobStore(tmp_path)
    data = os.urandom(10_000)
    blob_hash = store.put(data)
    _damage(_blob_path(tmp_path, blob_hash))
    real_read = os.read
    uploaded: list[str] = []

    def read_during_an_upload(fd: int, count: int) -> bytes:
        if not uploaded:
            uploaded.append(store.put_stream([data]))
        return real_read(fd, count)

    monkeypatch.setattr(_blobs.os, "read", read_during_an_upload)

    # Act
    verified = store.verify(blob_hash)

    # Assert: the damaged file was found so, and the good copy stays
    monkeypatch.undo()
    assert verified is False
    assert uploaded == [blob_hash]
    assert bytes(store.open(blob_hash)) == data


# -- owner-only modes --------------------------------------------------------------------


def test_the_blob_directory_and_its_files_are_owner_only(tmp_path: Path, umask_zero: None):
    store = DirectoryBlobStore(tmp_path / "state" / "blobs")
    small = store.put(b"small")
    large = store.put(os.urandom(LARGE))

    root = tmp_path / "state" / "blobs"
    assert _mode(root) == _mode(root / "tmp") == 0o700
    for blob_hash in (small, large):
        assert _mode(root / blob_hash[:2]) == 0o700
        assert _mode(_blob_path(root, blob_hash)) == 0o600


def test_an_existing_blob_directory_others_may_read_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    DirectoryBlobStore(tmp_path).put(b"an update")
    tmp_path.chmod(0o755)
    (tmp_path / "tmp").chmod(0o755)

    with caplog.at_level(logging.WARNING, "corolla.state"):
        DirectoryBlobStore(tmp_path)

    assert _mode(tmp_path) == _mode(tmp_path / "tmp") == 0o700  # nothing below is reachable
    assert "had mode 755" in caplog.text


def test_a_blob_damaged_since_an_earlier_process_is_removed_once_served_and_stored_again(
    tmp_path: Path,
) -> None:
    # Arrange: a blob stored by one store (an earlier link process), damaged on disk,
    # then served by a new store on the same directory
    data = os.urandom(3 * 1024 * 1024)
    blob_hash = DirectoryBlobStore(tmp_path).put(data)
    _damage(_blob_path(tmp_path, blob_hash))
    store = DirectoryBlobStore(tmp_path)

    # Act: its bytes are all served, then the read raises; the next upload stores it
    served: list[bytes] = []
    with pytest.raises(BlobIntegrityError, match="damaged on disk"):
        served.extend(store.iter_bytes(blob_hash, chunk_size=1024 * 1024))
    gone = not store.exists(blob_hash)
    store.put(data)

    # Assert
    assert len(served) == 3 and gone
    assert b"".join(store.iter_bytes(blob_hash)) == data


def test_a_blob_this_store_wrote_or_saw_whole_is_served_without_hashing_it_again(
    tmp_path: Path,
) -> None:
    # A store trusts what it hashed itself for trust_s: damage after that is found by
    # the next store, or once the trust runs out (here, at once).
    data = os.urandom(100_000)
    trusting = DirectoryBlobStore(tmp_path / "a")
    blob_hash = trusting.put(data)
    checking = DirectoryBlobStore(tmp_path / "b", trust_s=1e-9)
    checking.put(data)
    for root in (tmp_path / "a", tmp_path / "b"):
        _damage(_blob_path(root, blob_hash))

    served = b"".join(trusting.iter_bytes(blob_hash))
    with pytest.raises(BlobIntegrityError):
        b"".join(checking.iter_bytes(blob_hash))

    assert served != data and trusting.exists(blob_hash)
    assert not checking.exists(blob_hash)


def test_a_good_blob_served_by_a_new_store_is_kept(tmp_path: Path) -> None:
    data = os.urandom(50_000)
    blob_hash = DirectoryBlobStore(tmp_path).put(data)

    served = b"".join(DirectoryBlobStore(tmp_path).iter_bytes(blob_hash, chunk_size=7_000))

    assert served == data
    assert DirectoryBlobStore(tmp_path).exists(blob_hash)


def test_a_blob_served_from_an_offset_is_not_hashed(tmp_path: Path) -> None:
    # A download resumed mid-way cannot hash what it does not read: it serves as stored.
    data = os.urandom(50_000)
    blob_hash = DirectoryBlobStore(tmp_path).put(data)
    _damage(_blob_path(tmp_path, blob_hash))

    tail = b"".join(DirectoryBlobStore(tmp_path).iter_bytes(blob_hash, offset=40_000))

    assert len(tail) == 10_000
