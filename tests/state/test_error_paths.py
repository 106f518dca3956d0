"""Errors a state in use raises may reach a remote caller (a node storing a reply, pushing
or pulling arrays): they name no path of the link's machine, which stays in their cause.
Errors raised when a state is opened are for the local operator and name their file."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from corolla.state import (
    BlobNotFoundError,
    DirectoryBlobStore,
    RunStatus,
    SqliteLinkState,
    StorageError,
    _blob_file,
    _blobs,
    _sqlite_commit,
)

from .doubles import digest, instruction, reply


def _failing(name: str, path: str) -> Callable[..., object]:
    """A stand-in for an ``os`` call that fails as a dying disk does, naming ``path``."""

    def fail(*args: object, **kwargs: object) -> object:
        raise OSError(errno.EIO, f"{name} failed", path)

    return fail


def test_a_missing_blob_names_its_hash_not_the_directory(tmp_path: Path):
    store = DirectoryBlobStore(tmp_path)
    missing = digest(b"never stored")

    for call in (store.open, store.size, lambda h: list(store.iter_bytes(h))):
        with pytest.raises(BlobNotFoundError) as raised:
            call(missing)
        assert missing in str(raised.value)
        assert str(tmp_path) not in str(raised.value)


def test_a_failed_blob_write_names_no_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = DirectoryBlobStore(tmp_path)
    monkeypatch.setattr(
        _blob_file, "_write_at", _failing("write", str(tmp_path / "tmp" / "put-1234"))
    )

    with pytest.raises(StorageError) as raised:
        store.put_stream([os.urandom(1000)])

    assert "write failed" in str(raised.value)
    assert str(tmp_path) not in str(raised.value)
    assert str(tmp_path) in str(raised.value.__cause__)  # for the link's own logs


def test_a_failed_blob_read_names_no_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = DirectoryBlobStore(tmp_path)
    blob_hash = store.put(b"an update")
    path = str(tmp_path / blob_hash[:2] / blob_hash)
    monkeypatch.setattr(_blobs.os, "pread", _failing("read", path))
    monkeypatch.setattr(_blobs.os, "read", _failing("read", path))

    for call in (lambda: list(store.iter_bytes(blob_hash)), lambda: store.verify(blob_hash)):
        with pytest.raises(StorageError) as raised:
            call()
        assert blob_hash in str(raised.value)
        assert str(tmp_path) not in str(raised.value)


def test_a_failed_fsync_of_the_log_names_no_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with SqliteLinkState(tmp_path / "state.db") as state:
        run_id = state.create_run(digest(b"bundle")).run_id
        state.update_run_status(run_id, RunStatus.STARTING)
        state.update_run_status(run_id, RunStatus.RUNNING)
        node_id = state.register_node().node_id
        state.store_messages([instruction(run_id, node_id)])
        (delivered,) = state.fetch_messages(node_id)
        monkeypatch.setattr(
            _sqlite_commit.os, "fsync", _failing("fsync", str(tmp_path / "state.db-wal"))
        )

        with pytest.raises(StorageError) as raised:
            state.store_reply(reply(delivered))

    assert "durable" in str(raised.value)
    assert str(tmp_path) not in str(raised.value)


def test_errors_at_open_name_their_file_for_the_operator(tmp_path: Path):
    (tmp_path / "state.db").write_bytes(b"not a database at all" * 10)
    (tmp_path / "blobs").write_bytes(b"a file where the blob directory goes")

    with pytest.raises(StorageError, match=str(tmp_path / "state.db")):
        SqliteLinkState(tmp_path / "state.db")
    with pytest.raises(StorageError, match=str(tmp_path / "blobs")):
        DirectoryBlobStore(tmp_path / "blobs")
