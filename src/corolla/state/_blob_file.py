"""Writing one blob file durably; large blobs bypass the page cache.

A blob written through the page cache is copied into pages the kernel allocates for the
file, then written out by the ``fsync``. On a virtual machine that hands free memory back
to its host, those pages are memory the guest must fault in again, and the copy costs more
than the disk write: 400 MB of new blob files took 1.2-1.4 s of CPU here, against
0.15-0.18 s written with ``O_DIRECT`` from a reused buffer. So a blob larger than one
staging buffer is written with ``O_DIRECT``, from a page-aligned buffer its bytes are
copied into; its last block is padded to the alignment and the file truncated to the
blob's size. A smaller blob, or a file system that refuses ``O_DIRECT`` (tmpfs), is
written through the page cache as before. Either way the file is fsynced before
:meth:`BlobFile.finish` returns.

An ``O_DIRECT`` write returns only once the disk has the bytes, so the full staging
buffers of a large blob go to the disk from a small pool of threads, up to
:data:`WRITES_IN_FLIGHT` at a time (:data:`WRITES_IN_FLIGHT_TOTAL` for the whole
store: :class:`BlobWriters`), while the caller hashes and stages the next ones. The link
stored a single 100 MB upload at 410-440 MB/s here when each write was waited for, at
610-645 MB/s so.

A blob file is claimed (``flock``) by its writer from its creation until the store is done
with it (renamed into place, or removed), so a store opening the same directory meanwhile
(a run's ServerApp reads the link's blobs) can tell it from what a crash left behind:
:func:`remove_unclaimed` removes only files nobody claims. A claim ends with its
descriptor, so a killed writer's file is unclaimed at once.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import mmap
import os
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

try:
    import fcntl

    _FLOCK = True
except ImportError:  # pragma: no cover - Windows: no claims, and no sweeping
    _FLOCK = False

__all__ = [
    "DIRECT_ALIGNMENT",
    "FILE_MODE",
    "STAGING_BYTES",
    "BlobFile",
    "BlobWriters",
    "remove_unclaimed",
]

#: A blob file's mode: read and written by its owner only.
FILE_MODE = 0o600
#: Names drawn for a new blob file before giving up, each found swept by a store opening.
_NAME_ATTEMPTS = 8

#: Offsets and lengths of ``O_DIRECT`` writes are multiples of this (the largest logical
#: block size in common use).
DIRECT_ALIGNMENT = 4096
#: Bytes gathered before each write; blobs up to this size go through the page cache.
STAGING_BYTES = 4 * 1024 * 1024

_O_DIRECT = getattr(os, "O_DIRECT", 0)

#: Staging buffers kept for reuse once their writer is done.
FREE_BUFFERS_KEPT = 8
#: Full staging buffers of one blob being written while the next one fills.
WRITES_IN_FLIGHT = 4
#: Full staging buffers being written at once by all the blob files of a store, so that
#: the memory they hold stays bounded however many uploads are stored together.
WRITES_IN_FLIGHT_TOTAL = 16
#: Threads writing staged buffers, shared by the blob files of a store.
WRITER_THREADS = 4


class BlobWriters:
    """What the blob files of one store share: staging buffers kept for reuse, the slots
    bounding their writes in flight, and the threads making those writes (started with
    the first write in flight, joined by :meth:`stop`).

    Parameters
    ----------
    in_flight_total
        Staged buffers being written at once, over all the store's blob files.
    threads
        Threads writing them.
    """

    def __init__(
        self, in_flight_total: int = WRITES_IN_FLIGHT_TOTAL, threads: int = WRITER_THREADS
    ) -> None:
        self._lock = threading.Lock()
        self._free: list[mmap.mmap] = []
        self.slots = threading.BoundedSemaphore(in_flight_total)
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._threads, thread_name_prefix="corolla-blob-write"
                )
            return self._pool

    def take_buffer(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, STAGING_BYTES)  # anonymous maps are page-aligned

    def give_back(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < FREE_BUFFERS_KEPT:
                self._free.append(buffer)
                return
        buffer.close()

    def written(self, write: _Write) -> None:
        """``write``, which was in flight, is over: its buffer and its slot are free."""
        self.give_back(write.buffer)
        self.slots.release()

    def stop(self) -> None:
        """Join the writer threads and free the kept buffers (a later write starts the
        threads again). Call once no blob file of the store is being written."""
        with self._lock:
            pool, self._pool = self._pool, None
            free, self._free = self._free, []
        if pool is not None:
            pool.shutdown(wait=True)
        for buffer in free:
            buffer.close()


def _write_at(fd: int, buffer: mmap.mmap, count: int, offset: int) -> None:
    """Write the first ``count`` bytes of ``buffer`` at ``offset`` of the file."""
    with memoryview(buffer) as whole:
        view = whole[:count]
        while len(view):
            written = os.pwrite(fd, view, offset)
            if written <= 0:
                raise OSError(f"write returned {written}")
            view = view[written:]
            offset += written
        del view


def _refused_direct(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.EINVAL


@dataclasses.dataclass
class _Write:
    """A staged buffer on its way to the file: ``length`` bytes of the blob at ``offset``,
    ``count`` with the padding of an ``O_DIRECT`` write."""

    buffer: mmap.mmap
    offset: int
    length: int
    count: int
    future: Future[None] | None = None


def _claim(fd: int) -> bool:
    """Claim the blob file open as ``fd``: False if a sweeping store holds it or has
    removed it already (its name is then no longer this writer's)."""
    if not _FLOCK:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return os.fstat(fd).st_nlink > 0


def remove_unclaimed(directory: Path) -> int:
    """Remove the files in ``directory`` that no writer claims (what a crash left, or a
    writer that failed before cleaning up); return how many.

    Raises
    ------
    OSError
        If the directory cannot be listed.
    """
    if not _FLOCK:  # pragma: no cover - Windows: cannot tell them apart
        return 0
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:  # renamed into place or removed meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # being written
                os.close(fd)
                continue
            try:
                # Removed while claimed, so a writer that opened it meanwhile finds its
                # name gone when it claims it, and draws another.
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
    return removed


class BlobFile:
    """A new file in ``directory`` that a blob's bytes are written to, in order.

    Use :meth:`write` for each piece, then :meth:`finish` (fsync; the file stays
    claimed, see the module's docstring, so it may be renamed into place) and at last
    :meth:`abort` (unclaim the file, removing it unless it was moved away).
    :attr:`path` names the file once it exists. A writer is used by one thread at a
    time.

    Raises
    ------
    OSError
        If the file cannot be created or written (a write that failed in the background
        is raised by the next call).
    """

    def __init__(self, directory: Path, writers: BlobWriters) -> None:
        self._directory = directory
        self._writers = writers
        self._buffer: mmap.mmap | None = writers.take_buffer()
        self._staged = 0
        self._fd: int | None = None
        # The descriptor holding the claim: the first one opened, kept until abort().
        self._claim_fd: int | None = None
        self._direct = False
        # Whether a direct write went through: the first is made in the caller's thread,
        # so that a file system refusing them is found before anything is in flight.
        self._direct_taken = False
        self._in_flight: collections.deque[_Write] = collections.deque()
        self.size = 0
        self.path: Path | None = None

    def write(self, data: memoryview) -> None:
        """Append ``data`` (a flat byte view) to the blob."""
        while len(data):
            buffer = self._staging()
            n = min(len(data), STAGING_BYTES - self._staged)
            buffer[self._staged : self._staged + n] = data[:n]
            self._staged += n
            self.size += n
            data = data[n:]
            if self._staged == STAGING_BYTES:
                self._flush()

    def finish(self) -> Path:
        """Write what is staged, wait for the writes in flight, fsync the file and close
        it for writing; return its path, which stays claimed until :meth:`abort`."""
        if self._fd is None or self._staged:
            self._flush(final=True)  # a blob that never filled the buffer: page cache
        while self._in_flight:
            self._settle(self._in_flight.popleft())
        fd = self._descriptor()
        os.ftruncate(fd, self.size)  # drop the padding of the last direct block
        os.fsync(fd)
        self._close()
        assert self.path is not None
        return self.path

    def abort(self) -> None:
        """Close the file and remove it unless it was moved away; then unclaim it."""
        self._close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        claim, self._claim_fd = self._claim_fd, None
        if claim is not None:
            os.close(claim)

    def _staging(self) -> mmap.mmap:
        if self._buffer is None:
            raise ValueError("the blob file is closed")
        return self._buffer

    def _descriptor(self) -> int:
        if self._fd is None:
            raise ValueError("the blob file was not opened")
        return self._fd

    def _open(self, direct: bool) -> None:
        for _ in range(_NAME_ATTEMPTS):
            path = self._directory / f"put-{secrets.token_hex(8)}"
            fd = self._create(path, direct)
            if _claim(fd):
                break
            os.close(fd)  # swept by a store opening the directory: the sweeper removes it
        else:
            raise OSError(errno.EBUSY, "every new blob file was removed by a sweep")
        with contextlib.suppress(OSError):  # the umask may have taken the owner's bits
            os.fchmod(fd, FILE_MODE)
        self._fd = self._claim_fd = fd
        self.path = path

    def _create(self, path: Path, direct: bool) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        self._direct = False
        if direct and _O_DIRECT:
            try:
                fd = os.open(path, flags | _O_DIRECT, FILE_MODE)
                self._direct = True
                return fd
            except OSError:  # e.g. EINVAL on tmpfs: write through the page cache
                path.unlink(missing_ok=True)
        return os.open(path, flags, FILE_MODE)

    def _flush(self, *, final: bool = False) -> None:
        """Write the staged bytes: a full buffer, or (``final``) the blob's last bytes,
        padded to the alignment when the file takes ``O_DIRECT`` writes."""
        if self._fd is None:
            self._open(direct=not final)
        buffer = self._staging()
        length = count = self._staged
        if self._direct and final:
            count = -(-length // DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT
            buffer[length:count] = bytes(count - length)
        write = _Write(buffer, self.size - length, length, count)
        self._staged = 0
        if self._direct and self._direct_taken and not final and self._reserve_slot():
            write.future = self._writers.pool().submit(
                _write_at, self._descriptor(), buffer, count, write.offset
            )
            self._in_flight.append(write)
            self._buffer = self._writers.take_buffer()
            return
        try:
            _write_at(self._descriptor(), buffer, count, write.offset)
            self._direct_taken = self._direct
        except OSError as exc:
            if not (self._direct and _refused_direct(exc)):
                raise
            self._write_buffered(current=write)

    def _reserve_slot(self) -> bool:
        """Take a slot for one more write in flight, waiting first for this file's
        oldest write when the file has its share in flight or the process has no slot
        free; False if none comes free (the write is then made in the caller's thread)."""
        if len(self._in_flight) >= WRITES_IN_FLIGHT:
            self._settle(self._in_flight.popleft())
        if self._writers.slots.acquire(blocking=False):
            return True
        if self._in_flight:
            self._settle(self._in_flight.popleft())
            return self._writers.slots.acquire(blocking=False)
        return False

    def _settle(self, write: _Write) -> None:
        """Wait for ``write`` (in flight, the oldest), raising its error."""
        assert write.future is not None
        try:
            write.future.result()
        except OSError as exc:
            if not _refused_direct(exc):
                self._writers.written(write)
                raise
            self._write_buffered(settled=write)
            return
        self._writers.written(write)

    def _write_buffered(
        self, *, current: _Write | None = None, settled: _Write | None = None
    ) -> None:
        """The file system took ``O_DIRECT`` at open but refused the write ``current``
        (made in this thread) or ``settled`` (in flight): wait for the writes still in
        flight, reopen the file for writes through the page cache and write again all
        that was refused."""
        done = [] if settled is None else [settled]
        done += self._in_flight
        self._in_flight.clear()
        refused = [] if current is None else [current]
        error: BaseException | None = None
        for write in done:
            assert write.future is not None
            exc = write.future.exception()
            if exc is None:
                continue
            if _refused_direct(exc):
                refused.append(write)
            elif error is None:
                error = exc
        try:
            if error is not None:
                raise error
            assert self.path is not None
            refused_fd = self._descriptor()
            self._fd = None
            if refused_fd != self._claim_fd:  # the first descriptor keeps the claim
                os.close(refused_fd)
            self._fd = os.open(self.path, os.O_WRONLY)
            self._direct = False
            for write in refused:
                _write_at(self._fd, write.buffer, write.length, write.offset)
        finally:
            for write in done:
                self._writers.written(write)

    def _close(self) -> None:
        # Writes in flight use the descriptor: it is closed once they are done.
        for write in self._in_flight:
            assert write.future is not None
            write.future.exception()  # waits; what it raised no longer matters
            self._writers.written(write)
        self._in_flight.clear()
        if self._fd is not None:
            if self._fd != self._claim_fd:
                os.close(self._fd)
            self._fd = None
        if self._buffer is not None:
            self._writers.give_back(self._buffer)
            self._buffer = None
