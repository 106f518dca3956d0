"""Blob stores: content addressing, streaming writes, zero-copy reads, bad hashes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corolla.core import ConfigError, decode_array, encode_array
from corolla.state import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStore,
    DirectoryBlobStore,
    InvalidBlobHashError,
    MemoryBlobStore,
)

from .doubles import digest


@pytest.fixture(params=["directory", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "directory":
        return DirectoryBlobStore(tmp_path / "blobs")
    return MemoryBlobStore()


def _blob_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp")


# The store is content-addressed, so reusing it across examples cannot change an outcome.
reuse_store = settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])


@reuse_store
@given(chunks=st.lists(st.binary(max_size=2048), max_size=8))
def test_chunks_round_trip_under_their_sha256(store: BlobStore, chunks: list[bytes]):
    data = b"".join(chunks)

    blob_hash = store.put_stream(iter(chunks))

    assert blob_hash == hashlib.sha256(data).hexdigest()
    assert bytes(store.open(blob_hash)) == data
    assert store.size(blob_hash) == len(data)
    assert store.exists(blob_hash)
    assert store.put(data) == blob_hash


@reuse_store
@given(data=st.binary(max_size=4096), cut=st.integers(min_value=0, max_value=4096))
def test_put_accepts_whole_data_or_chunks_in_any_buffer_type(
    store: BlobStore, data: bytes, cut: int
):
    expected = hashlib.sha256(data).hexdigest()

    assert store.put(data) == expected
    assert store.put(bytearray(data)) == expected
    assert store.put(memoryview(data)) == expected
    assert store.put([data[:cut], memoryview(data)[cut:]]) == expected


def test_put_takes_an_array_buffer_without_copying_it_first(store: BlobStore):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)

    blob_hash = store.put(memoryview(array))

    assert bytes(store.open(blob_hash)) == array.tobytes()


def test_an_encoded_array_decodes_straight_from_the_blob(store: BlobStore):
    array = np.linspace(0, 1, 1000)
    blob_hash = store.put(encode_array(array))

    decoded = decode_array(store.open(blob_hash))

    np.testing.assert_array_equal(decoded, array)
    assert not decoded.flags.writeable
    assert not decoded.flags.owndata


def test_the_view_is_read_only(store: BlobStore):
    view = store.open(store.put(b"frozen"))

    assert view.readonly
    with pytest.raises(TypeError):
        view[0] = 1


def test_an_empty_blob(store: BlobStore):
    blob_hash = store.put(b"")

    assert blob_hash == digest(b"")
    assert bytes(store.open(blob_hash)) == b""
    assert store.size(blob_hash) == 0


def test_a_matching_expected_hash_stores(store: BlobStore):
    assert store.put_stream([b"ab", b"c"], expected_hash=digest(b"abc")) == digest(b"abc")


def test_a_mismatching_expected_hash_stores_nothing(store: BlobStore):
    with pytest.raises(BlobIntegrityError, match=digest(b"abx")):
        store.put_stream([b"ab", b"x"], expected_hash=digest(b"abc"))

    assert not store.exists(digest(b"abx"))
    assert not store.exists(digest(b"abc"))


def test_a_chunk_that_is_no_buffer_is_refused(store: BlobStore):
    with pytest.raises(ConfigError, match="bytes-like"):
        store.put_stream([b"ok", 42])  # type: ignore[list-item]


MALFORMED = [
    "../../../../etc/passwd",
    "/" + "a" * 63,
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "a" * 64 + "\n",
    "g" * 64,
    "",
    None,
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_hashes_are_refused_everywhere(store: BlobStore, bad):
    for call in (store.open, store.exists, store.size, store.delete):
        with pytest.raises(InvalidBlobHashError):
            call(bad)
    if bad is not None:  # None there means "no check"
        with pytest.raises(InvalidBlobHashError):
            store.put_stream([b"x"], expected_hash=bad)


def test_missing_blobs(store: BlobStore):
    missing = digest(b"never stored")

    assert not store.exists(missing)
    assert store.delete(missing) is False
    with pytest.raises(BlobNotFoundError, match=missing):
        store.open(missing)
    with pytest.raises(BlobNotFoundError):
        store.size(missing)


def test_delete_keeps_open_views_valid(store: BlobStore):
    blob_hash = store.put(b"still here")
    view = store.open(blob_hash)

    assert store.delete(blob_hash) is True

    assert not store.exists(blob_hash)
    assert bytes(view) == b"still here"


def test_concurrent_puts_of_one_content_keep_one_copy(tmp_path: Path):
    store = DirectoryBlobStore(tmp_path)
    data = os.urandom(1 << 16)
    hashes: list[str] = []

    threads = [threading.Thread(target=lambda: hashes.append(store.put(data))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(hashes) == {digest(data)}
    assert _blob_files(tmp_path) == [tmp_path / digest(data)[:2] / digest(data)]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_directory_layout_and_no_leftovers(tmp_path: Path):
    store = DirectoryBlobStore(tmp_path)
    store.put(b"one")
    store.put(b"one")
    with pytest.raises(BlobIntegrityError):
        store.put_stream([b"two"], expected_hash=digest(b"one"))
    with pytest.raises(ConfigError):
        store.put_stream([b"three", object()])  # type: ignore[list-item]

    assert _blob_files(tmp_path) == [tmp_path / digest(b"one")[:2] / digest(b"one")]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_whole_content_already_stored_is_not_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = DirectoryBlobStore(tmp_path)
    store.put(b"round 1 model")
    fsyncs: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd))

    again = store.put(bytearray(b"round 1 model"))

    assert again == digest(b"round 1 model") and fsyncs == []
    assert bytes(store.open(again)) == b"round 1 model"


def test_streaming_writes_hold_one_chunk_at_a_time(tmp_path: Path):
    store = DirectoryBlobStore(tmp_path)
    chunk = os.urandom(1 << 20)
    expected = hashlib.sha256(chunk * 32).hexdigest()

    def chunks() -> Iterator[memoryview]:
        for _ in range(32):
            yield memoryview(chunk)

    assert store.put_stream(chunks(), expected_hash=expected) == expected
    assert store.size(expected) == 32 << 20


def test_a_blob_over_2_gib_maps_without_copying(tmp_path: Path):
    # A sparse file stands in for a stored 3 GiB model: mapping it reads no data, and
    # indexing past 2**31 proves no 32-bit length or offset is involved anywhere.
    store = DirectoryBlobStore(tmp_path)
    fake_hash = digest(b"three gibibytes")
    path = tmp_path / fake_hash[:2] / fake_hash
    path.parent.mkdir()
    size = 3 << 30
    with path.open("wb") as file:
        file.truncate(size)
        file.seek(2**31 + 7)
        file.write(b"\x07")
        file.seek(size - 1)
        file.write(b"\x01")

    view = store.open(fake_hash)

    assert store.size(fake_hash) == size
    assert len(view) == size
    assert (view[2**31 + 7], view[-1], view[0]) == (7, 1, 0)
    tail = np.frombuffer(view, dtype=np.uint8, offset=size - 4)
    assert tail.tolist() == [0, 0, 0, 1]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_stored_blob_survives_a_sigkill_right_after_put(tmp_path: Path):
    script = textwrap.dedent(
        f"""
        import os, signal
        from corolla.state import DirectoryBlobStore
        DirectoryBlobStore({str(tmp_path)!r}).put([b"survives ", b"the crash"])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )

    child = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)

    assert child.returncode == -signal.SIGKILL, child.stderr
    store = DirectoryBlobStore(tmp_path)
    assert bytes(store.open(digest(b"survives the crash"))) == b"survives the crash"


@pytest.mark.parametrize("offset", [0, 1, 4, 9, 10])
def test_iter_bytes_reads_copies_from_an_offset(store: BlobStore, offset: int):
    blob_hash = store.put(b"0123456789")

    pieces = list(store.iter_bytes(blob_hash, offset, chunk_size=4))

    assert all(isinstance(p, bytes) and 0 < len(p) <= 4 for p in pieces)
    assert b"".join(pieces) == b"0123456789"[offset:]


def test_iter_bytes_of_a_missing_blob(store: BlobStore):
    with pytest.raises(BlobNotFoundError):
        next(store.iter_bytes(digest(b"absent")))


def test_a_verified_payload_is_stored_without_hashing_it_again(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
):
    payload = bytearray(b"downloaded and checked")
    vouched = digest(b"x")
    monkeypatch.setattr(hashlib, "sha256", lambda *a: pytest.fail("hashed again"))

    stored = store.put_stream((memoryview(payload),), expected_hash=vouched, verified=True)

    assert stored == vouched  # the caller vouched for it: the store takes its word
    assert bytes(store.open(stored)) == bytes(payload)
    assert store.open(stored).readonly


def test_stored_lists_every_blob_with_when_it_was_written(store: BlobStore):
    before = time.time()
    hashes = {store.put(b"one"), store.put(b"two"), store.put(b"one")}
    store.delete(store.put(b"gone"))

    listed = dict(store.stored())

    assert set(listed) == hashes
    assert all(before - 2 <= written <= time.time() + 2 for written in listed.values())
