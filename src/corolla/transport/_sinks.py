"""Where an incoming payload is assembled: memory, or a file for payloads beyond RAM.

A :class:`Sink` receives the payload's bytes at increasing offsets and, once complete,
hands back one read-only ``memoryview`` of all of them, which ``decode_array`` turns into
an array without copying. :class:`MemorySink` preallocates a buffer (reused from one
payload to the next of the same size);
:class:`FileSink` writes a preallocated file and maps it, so a payload larger than memory
(or than the 2 GiB a single protobuf message may hold) is assembled without holding it in
RAM, and the file can then be renamed into a content-addressed blob store.
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from pathlib import Path
from typing import Protocol

import numpy as np

from corolla.core import BufferLike

__all__ = ["FileSink", "MemorySink", "Sink"]


class Sink(Protocol):
    """Receives a payload of known size and returns it whole."""

    def write(self, offset: int, data: BufferLike) -> None:
        """Store ``data`` at ``offset`` (offsets only increase, within the size)."""

    def finish(self) -> memoryview:
        """Return a read-only view of the whole payload; no more writes follow."""

    def abort(self) -> None:
        """Discard what was written (the payload is incomplete or corrupt)."""


#: Payloads from this size on are assembled in memory kept for reuse (see MemorySink).
REUSED_SINK_BYTES = 1 << 20
#: Bytes of free buffers a process keeps for the next payloads (the oldest go first):
#: room for every array of a model of this size, round after round.
FREE_SINK_BYTES = 256 * 1024 * 1024


class _FreeBuffers:
    """Anonymous maps whose payloads are gone, kept for the next payload of their size."""

    def __init__(self, kept_bytes: int) -> None:
        self._kept_bytes = kept_bytes
        self._lock = threading.Lock()
        self._free: list[mmap.mmap] = []
        self._bytes = 0

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            for i, buffer in enumerate(self._free):
                if len(buffer) == size:
                    self._bytes -= size
                    return self._free.pop(i)
        return mmap.mmap(-1, size)

    def give_back(self, buffer: mmap.mmap) -> None:
        # A buffer not kept is unmapped once the last reference to it goes (the array
        # being finalized may still hold an export of it, so it is not closed here).
        with self._lock:
            self._free.append(buffer)
            self._bytes += len(buffer)
            while self._bytes > self._kept_bytes:
                self._bytes -= len(self._free.pop(0))


_free_buffers = _FreeBuffers(FREE_SINK_BYTES)


class MemorySink:
    """Assembles a payload in one preallocated buffer.

    A payload of :data:`REUSED_SINK_BYTES` or more goes into memory kept for reuse: a
    node receives a model of the same size every round, and fresh memory costs a page
    fault and the zeroing of every page (about a quarter of a node's CPU for a 100 MB
    model, with a ``bytearray`` zeroed whole first). The buffer is wrapped in an array
    that every view of the payload (and every array decoded from it) holds on to; once
    the last of them is gone, the buffer is free for the next payload. Every byte is
    written before :meth:`finish` returns the payload (the assembler checks it whole and
    hashes it), so nothing of a previous payload shows through.
    """

    __slots__ = ("_view",)

    def __init__(self, size: int) -> None:
        if size >= REUSED_SINK_BYTES:
            memory = _free_buffers.take(size)
            owner = np.frombuffer(memory, dtype=np.uint8)
            weakref.finalize(owner, _free_buffers.give_back, memory)
            self._view = owner.data  # a view, and every view of it, holds ``owner``
        else:
            self._view = memoryview(bytearray(size))

    def write(self, offset: int, data: BufferLike) -> None:
        n = len(data)
        self._view[offset : offset + n] = data

    def finish(self) -> memoryview:
        return self._view.toreadonly()

    def abort(self) -> None:
        self._view.release()


class FileSink:
    """Assembles a payload in a file at ``path``, then maps it read-only.

    Parameters
    ----------
    path
        The file to write; created (mode 0600) or truncated. The caller chooses a
        temporary name and renames the file once the payload is verified.
    size
        The payload's size; the file is preallocated (sparse) to it.
    durable
        ``fsync`` the file in :meth:`finish`, before anyone is told it is stored.

    Raises
    ------
    OSError
        If the file cannot be created or written.
    """

    __slots__ = ("_durable", "_file", "_size", "path")

    def __init__(self, path: str | os.PathLike[str], size: int, *, durable: bool = False) -> None:
        self.path = Path(path)
        self._size = size
        self._durable = durable
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        self._file.truncate(size)

    def write(self, offset: int, data: BufferLike) -> None:
        view = memoryview(data)
        self._file.seek(offset)
        while len(view):  # a raw write may be partial
            written = self._file.write(view)
            view = view[written or 0 :]

    def finish(self) -> memoryview:
        with self._file:
            if self._durable:
                os.fsync(self._file.fileno())
            if self._size == 0:
                return memoryview(b"")  # a zero-length file cannot be mapped
            mapped = mmap.mmap(self._file.fileno(), self._size, access=mmap.ACCESS_READ)
        # The map outlives the file descriptor; it is unmapped when the last view is gone.
        return memoryview(mapped)

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)
