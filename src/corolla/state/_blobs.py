"""Content-addressed blob stores: bytes named by their sha256, stored once.

Array payloads, app bundles and checkpoints are blobs; the link's state refers to them by
hash. Storing the same content twice keeps one copy, so a global model sent to a thousand
nodes is one blob.

:class:`DirectoryBlobStore` keeps each blob in a file ``ROOT/ab/abcdef...`` (the first two
hex digits fan the files out over 256 directories). A blob is written to ``ROOT/tmp``
(one larger than 4 MiB bypassing the page cache: see ``_blob_file``), fsynced, then
renamed into place and its directory fsynced: a crash leaves either the whole blob under
its name or nothing, never a torn file. What a crash leaves in ``ROOT/tmp`` is removed
when a store next opens the directory. Reading maps the file into memory, so a model of
any size (over 2 GiB included, on a 64-bit system) is read without copying. The
directories are readable by their owner only, and so are the files.

A stored blob is trusted: reads do not hash it again (the link serves a 100 MB model at
700-900 MB/s, more than one core hashes). When its bytes go bad all the same (bit rot, a
file truncated by a failing disk or by hand), two things put it right, neither costing
the hot path anything:

* an upload of the same content replaces the stored file (the new one was hashed as it
  was written; the rename costs what discarding it did), and ``put`` of whole content
  writes it again if the stored file's size differs from it (one ``stat``, as before);
* a reader who finds a blob wrong (a size other than the one its message declares, an
  array that does not decode) calls :meth:`BlobStore.verify`, which reads it again and
  removes it if it does not hash to its name: ``exists`` then answers False, so the
  link asks the next node for it (``StatArrays``) and the upload stores it again.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import mmap
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from corolla.core import ConfigError

from ._blob_file import BlobFile, BlobWriters, remove_unclaimed
from ._checks import check_blob_hash
from ._errors import BlobIntegrityError, BlobNotFoundError, StorageError
from ._owner_only import DIRECTORY_MODE, make_directory, tighten

__all__ = ["BlobStore", "Chunk", "DirectoryBlobStore", "MemoryBlobStore"]

#: A blob's name: its sha256 in lowercase hex.
_HASH = re.compile(r"[0-9a-f]{64}")

#: What a blob is written from: any C-contiguous buffer of bytes.
Chunk = bytes | bytearray | memoryview

_log = logging.getLogger("corolla.state")

#: Bytes read at a time by :meth:`DirectoryBlobStore.verify`.
_VERIFY_CHUNK = 4 * 1024 * 1024


def _byte_view(chunk: Chunk) -> memoryview:
    try:
        return memoryview(chunk).cast("B")
    except TypeError as exc:
        raise ConfigError(
            f"blob chunks must be C-contiguous bytes-like objects, got {type(chunk).__name__}"
        ) from exc


def _check_digest(actual: str, expected: str | None) -> None:
    if expected is not None and actual != expected:
        raise BlobIntegrityError(
            f"content hashes to {actual}, expected {expected}: corrupted or truncated; "
            "nothing was stored"
        )


class BlobStore(abc.ABC):
    """Bytes stored by content: ``put`` returns the sha256 hex digest that names them.

    Every method rejects a malformed hash with :class:`InvalidBlobHashError` before
    touching storage. Safe to use from several threads.
    """

    def put(self, data: Chunk | Iterable[Chunk]) -> str:
        """Store bytes, given whole or as an iterable of chunks, and return their hash.

        Raises
        ------
        ConfigError
            If a chunk is not a C-contiguous bytes-like object.
        StorageError
            If writing fails (e.g. the disk is full); nothing is stored.
        """
        if isinstance(data, bytes | bytearray | memoryview):
            return self.put_stream((data,))
        return self.put_stream(data)

    @abc.abstractmethod
    def put_stream(
        self, chunks: Iterable[Chunk], expected_hash: str | None = None, *, verified: bool = False
    ) -> str:
        """Store chunks as they come, hashing while writing, and return the hash.

        Memory stays that of one chunk however large the blob. With ``expected_hash``
        the content must hash to it (a transfer checked end to end). With ``verified``
        the caller vouches that it does (it hashed the bytes as they arrived): the store
        does not hash them again, and may keep the buffer given instead of a copy, which
        must not change afterwards.

        Raises
        ------
        BlobIntegrityError
            If the content does not hash to ``expected_hash``; nothing is stored.
        InvalidBlobHashError
            If ``expected_hash`` is malformed.
        ConfigError
            If a chunk is not a C-contiguous bytes-like object.
        StorageError
            If writing fails; nothing is stored.
        """

    @abc.abstractmethod
    def open(self, blob_hash: str) -> memoryview:
        """A read-only view of a blob's bytes, without copying them.

        The view stays valid after the blob is deleted. Decode arrays straight from it
        (``corolla.core.decode_array``).

        Raises
        ------
        BlobNotFoundError
            If no blob has that hash.
        InvalidBlobHashError
            If ``blob_hash`` is malformed.
        """

    def iter_bytes(
        self, blob_hash: str, offset: int = 0, chunk_size: int = 4 * 1024 * 1024
    ) -> Iterator[bytes]:
        """The blob's bytes from ``offset`` on, as copies of at most ``chunk_size`` bytes.

        For sending a blob: unlike :meth:`open`, nothing maps the whole blob, so a
        process serving a large blob to many readers holds one chunk per reader.

        Raises
        ------
        BlobNotFoundError
            If no blob has that hash.
        InvalidBlobHashError
            If ``blob_hash`` is malformed.
        """
        view = self.open(blob_hash)
        for start in range(offset, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])

    @abc.abstractmethod
    def exists(self, blob_hash: str) -> bool:
        """True if a blob has that hash.

        Raises
        ------
        InvalidBlobHashError
            If ``blob_hash`` is malformed.
        """

    @abc.abstractmethod
    def size(self, blob_hash: str) -> int:
        """The blob's length in bytes.

        Raises
        ------
        BlobNotFoundError
            If no blob has that hash.
        InvalidBlobHashError
            If ``blob_hash`` is malformed.
        """

    @abc.abstractmethod
    def stored(self) -> Iterator[tuple[str, float]]:
        """Every blob's hash, with when it was written (seconds since the epoch)."""

    @abc.abstractmethod
    def delete(self, blob_hash: str) -> bool:
        """Remove a blob; True if it existed. Views already open stay valid.

        Raises
        ------
        InvalidBlobHashError
            If ``blob_hash`` is malformed.
        """

    def close(self) -> None:  # noqa: B027  (a store with nothing to stop need not say so)
        """Stop what the store started (writer threads); it may be used again after.
        The default has nothing to stop."""

    def verify(self, blob_hash: str) -> bool:
        """Read a blob again and check that it hashes to its name; remove it if not.

        For a reader who found a blob wrong (a size other than the one expected, content
        that does not decode): a damaged blob is removed, so :meth:`exists` answers
        False and the next upload of the content stores it again. A blob that hashes
        right is kept, so a caller mistaken (or lying) about it costs a read, never the
        blob. Reads the whole blob: not for every read.

        Returns
        -------
        bool
            True if the blob is stored and hashes to its name; False if it was damaged
            (and is removed now) or is not stored.

        Raises
        ------
        InvalidBlobHashError
            If ``blob_hash`` is malformed.
        StorageError
            If the blob cannot be read.
        """
        try:
            view = self.open(blob_hash)
        except BlobNotFoundError:
            return False
        if hashlib.sha256(view).hexdigest() == blob_hash:
            return True
        self.delete(blob_hash)
        return False


class MemoryBlobStore(BlobStore):
    """Blobs in a dict: for tests and a link whose state is ``:memory:``."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes | memoryview] = {}
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    def put_stream(
        self, chunks: Iterable[Chunk], expected_hash: str | None = None, *, verified: bool = False
    ) -> str:
        expected = None if expected_hash is None else check_blob_hash(expected_hash)
        views = [_byte_view(chunk) for chunk in chunks]
        data: bytes | memoryview
        if verified and expected is not None:
            # A downloaded payload, already checked: keep its buffer, without a copy.
            data = views[0].toreadonly() if len(views) == 1 else b"".join(views)
            blob_hash = expected
        else:
            data = b"".join(views)
            blob_hash = hashlib.sha256(data).hexdigest()
            _check_digest(blob_hash, expected)
        with self._lock:
            if blob_hash not in self._blobs:
                self._blobs[blob_hash] = data
                self._written[blob_hash] = time.time()
        return blob_hash

    def open(self, blob_hash: str) -> memoryview:
        check_blob_hash(blob_hash)
        with self._lock:
            data = self._blobs.get(blob_hash)
        if data is None:
            raise BlobNotFoundError(f"no blob {blob_hash}")
        return memoryview(data)

    def exists(self, blob_hash: str) -> bool:
        check_blob_hash(blob_hash)
        with self._lock:
            return blob_hash in self._blobs

    def size(self, blob_hash: str) -> int:
        return len(self.open(blob_hash))

    def stored(self) -> Iterator[tuple[str, float]]:
        with self._lock:
            return iter(list(self._written.items()))

    def delete(self, blob_hash: str) -> bool:
        check_blob_hash(blob_hash)
        with self._lock:
            self._written.pop(blob_hash, None)
            return self._blobs.pop(blob_hash, None) is not None


class DirectoryBlobStore(BlobStore):
    """Blobs as files under ``root``.

    Opening the store creates ``root`` if missing, makes it readable by its owner only
    (with a warning if it was not: then nothing below it can be reached by other users
    either), and removes the partial uploads a crash left in ``root/tmp`` (never one
    being written: several stores, in several processes, may use one directory). The
    directories and files it creates are owner-only too.

    Bytes served with :meth:`iter_bytes` are checked against their name once in a while:
    the first time this store serves a blob it did not write, and again ``trust_s``
    seconds after it last saw it hash right. A damaged blob is removed then, and the
    next upload of its content stores it again.

    Raises
    ------
    StorageError
        If ``root`` cannot be created or listed.
    """

    def __init__(self, root: str | os.PathLike[str], *, trust_s: float = 3600.0) -> None:
        self._root = Path(root)
        self._tmp = self._root / "tmp"
        # Replacing a blob and removing a damaged one, one at a time (see verify).
        self._replacing = threading.Lock()
        # Blobs this store saw hash to their name, and when (time.monotonic()): their
        # bytes are served without hashing them again for trust_s (see iter_bytes).
        self._trust_s = trust_s
        self._good: dict[str, float] = {}
        # The staging buffers and writer threads of this store's blob files.
        self._writers = BlobWriters()
        try:
            if not self._root.is_dir():
                self._root.parent.mkdir(parents=True, exist_ok=True)
            make_directory(self._root)
            make_directory(self._tmp)
            # The root's mode keeps other users from everything below it, so what is
            # already there is not walked (there may be thousands of blobs).
            tighten(self._root, DIRECTORY_MODE)
            tighten(self._tmp, DIRECTORY_MODE)
            removed = remove_unclaimed(self._tmp)
        except OSError as exc:
            raise StorageError(
                f"cannot open the blob directory {self._root}: {exc.strerror}"
            ) from exc
        if removed:
            _log.info("removed %d partial uploads left in %s", removed, self._tmp)

    def close(self) -> None:
        """Join the threads that write large blobs and free their staging buffers."""
        self._writers.stop()

    @property
    def root(self) -> Path:
        """The directory holding the blobs."""
        return self._root

    def _path(self, blob_hash: str) -> Path:
        check_blob_hash(blob_hash)  # also what keeps the path inside the root
        return self._root / blob_hash[:2] / blob_hash

    def put(self, data: Chunk | Iterable[Chunk]) -> str:
        if isinstance(data, bytes | bytearray | memoryview):
            # Content given whole is hashed first: what is stored already (the same
            # message content for every node of a round) costs no write and no fsync.
            # A stored file of another size is damaged: it is written again.
            view = _byte_view(data)
            blob_hash = hashlib.sha256(view).hexdigest()
            try:
                if os.stat(self._path(blob_hash)).st_size == len(view):
                    return blob_hash
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot read blob {blob_hash}: {_reason(exc)}") from exc
            return self.put_stream((data,), expected_hash=blob_hash)
        return self.put_stream(data)

    def put_stream(
        self, chunks: Iterable[Chunk], expected_hash: str | None = None, *, verified: bool = False
    ) -> str:
        expected = None if expected_hash is None else check_blob_hash(expected_hash)
        trusted = verified and expected is not None
        try:
            file = BlobFile(self._tmp, self._writers)
        except OSError as exc:
            raise StorageError(f"cannot store a blob: {_reason(exc)}") from exc
        try:
            digest = None if trusted else hashlib.sha256()
            for chunk in chunks:
                view = _byte_view(chunk)
                if digest is not None:
                    digest.update(view)
                file.write(view)
            tmp = file.finish()
            blob_hash = digest.hexdigest() if digest is not None else str(expected)
            _check_digest(blob_hash, expected)
            final = self._path(blob_hash)
            if not final.parent.is_dir() and make_directory(final.parent):
                _fsync_directory(self._root)
            # The same content stored already is replaced all the same: this copy was
            # just hashed, while the stored one may have gone bad since it was.
            with self._replacing:
                os.replace(tmp, final)
                self._good[blob_hash] = time.monotonic()
            _fsync_directory(final.parent)
            return blob_hash
        except OSError as exc:
            raise StorageError(f"cannot store a blob: {_reason(exc)}") from exc
        finally:
            file.abort()  # removes the temporary file unless it was renamed into place

    def open(self, blob_hash: str) -> memoryview:
        path = self._path(blob_hash)
        try:
            with path.open("rb") as file:
                if os.fstat(file.fileno()).st_size == 0:
                    return memoryview(b"")  # mmap cannot map an empty file
                # The map outlives the file object; it is unmapped once no view uses it.
                return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {blob_hash}") from None
        except OSError as exc:
            raise StorageError(f"cannot read blob {blob_hash}: {_reason(exc)}") from exc

    def _trusted(self, blob_hash: str) -> bool:
        with self._replacing:
            seen = self._good.get(blob_hash)
        return seen is not None and time.monotonic() - seen < self._trust_s

    def iter_bytes(
        self, blob_hash: str, offset: int = 0, chunk_size: int = 4 * 1024 * 1024
    ) -> Iterator[bytes]:
        """The blob's bytes from ``offset`` on, as copies of at most ``chunk_size`` bytes.

        A blob read whole that this store has not seen hash to its name lately (one it
        did not write, or wrote over ``trust_s`` ago) is hashed as it is read: one that
        turns out damaged is removed after its last bytes, and the read raises, so the
        content's next upload stores it again.

        Raises
        ------
        BlobNotFoundError
            If no blob has that hash.
        BlobIntegrityError
            After the last bytes, if they did not hash to the blob's name.
        InvalidBlobHashError
            If ``blob_hash`` is malformed.
        StorageError
            If the blob cannot be read.
        """
        digest = None if offset or self._trusted(blob_hash) else hashlib.sha256()
        for data in self._read_chunks(blob_hash, offset, chunk_size):
            if digest is not None:
                digest.update(data)
            yield data
        if digest is None:
            return
        if digest.hexdigest() == blob_hash:
            with self._replacing:
                self._good[blob_hash] = time.monotonic()
            return
        # Removed unless an upload put a good copy in its place meanwhile (verify).
        self.verify(blob_hash)
        raise BlobIntegrityError(
            f"blob {blob_hash[:12]} was damaged on disk: it was removed, and its next "
            "upload stores it again"
        )

    def _read_chunks(self, blob_hash: str, offset: int, chunk_size: int) -> Iterator[bytes]:
        path = self._path(blob_hash)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {blob_hash}") from None
        except OSError as exc:
            raise StorageError(f"cannot read blob {blob_hash}: {_reason(exc)}") from exc
        try:
            size = os.fstat(fd).st_size
            for start in range(offset, size, chunk_size):
                yield os.pread(fd, min(chunk_size, size - start), start)
        except OSError as exc:
            raise StorageError(f"cannot read blob {blob_hash}: {_reason(exc)}") from exc
        finally:
            os.close(fd)

    def exists(self, blob_hash: str) -> bool:
        return self._path(blob_hash).is_file()

    def size(self, blob_hash: str) -> int:
        path = self._path(blob_hash)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {blob_hash}") from None

    def stored(self) -> Iterator[tuple[str, float]]:
        for fan in sorted(self._root.glob("[0-9a-f][0-9a-f]")):
            with os.scandir(fan) as entries:
                for entry in entries:
                    if not _HASH.fullmatch(entry.name):
                        continue
                    try:
                        yield entry.name, entry.stat().st_mtime
                    except FileNotFoundError:  # deleted meanwhile
                        continue

    def delete(self, blob_hash: str) -> bool:
        path = self._path(blob_hash)
        with self._replacing:
            self._good.pop(blob_hash, None)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_directory(path.parent)
        return True

    def verify(self, blob_hash: str) -> bool:
        path = self._path(blob_hash)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot read blob {blob_hash}: {_reason(exc)}") from exc
        try:
            digest = hashlib.sha256()
            # A read at a time, not a map: a damaged disk answers a read with EIO,
            # where a map would answer with SIGBUS.
            while chunk := os.read(fd, _VERIFY_CHUNK):
                digest.update(chunk)
            if digest.hexdigest() == blob_hash:
                with self._replacing:
                    self._good[blob_hash] = time.monotonic()
                return True
            checked = os.fstat(fd)
            with self._replacing:
                self._good.pop(blob_hash, None)
                # Only the file read is removed: not a good copy an upload put in its
                # place meanwhile (another process's upload can still slip between the
                # stat and the unlink; it is then stored again by the next upload).
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    return False
                if (current.st_dev, current.st_ino) == (checked.st_dev, checked.st_ino):
                    path.unlink()
                    _log.warning(
                        "blob %s does not hash to its name (%d bytes): removed, so that "
                        "the next upload of it stores it again",
                        blob_hash,
                        checked.st_size,
                    )
            _fsync_directory(path.parent)
            return False
        except OSError as exc:
            raise StorageError(f"cannot read blob {blob_hash}: {_reason(exc)}") from exc
        finally:
            os.close(fd)


def _reason(exc: OSError) -> str:
    """What went wrong, without the file's path: errors of a store in use may travel to
    a remote caller (a node pushing or pulling arrays), who has no business knowing the
    link's directories. The path stays in the error's cause, for the link's own logs."""
    if exc.strerror:
        return exc.strerror
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _fsync_directory(path: Path) -> None:
    """Make a rename or creation in ``path`` durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
