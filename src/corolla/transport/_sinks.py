"""Where an incoming payload is assembled: memory, or a file for payloads beyond RAM.

A :class:`Sink` receives the payload's bytes at increasing offsets and, once complete,
hands back one read-only ``memoryview`` of all of them, which ``decode_array`` turns into
an array without copying. :class:`MemorySink` preallocates a ``bytearray``;
:class:`FileSink` writes a preallocated file and maps it, so a payload larger than memory
(or than the 2 GiB a single protobuf message may hold) is assembled without holding it in
RAM, and the file can then be renamed into a content-addressed blob store.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Protocol

from corolla.core._codec import BufferLike

__all__ = ["FileSink", "MemorySink", "Sink"]


class Sink(Protocol):
    """Receives a payload of known size and returns it whole."""

    def write(self, offset: int, data: BufferLike) -> None:
        """Store ``data`` at ``offset`` (offsets only increase, within the size)."""

    def finish(self) -> memoryview:
        """Return a read-only view of the whole payload; no more writes follow."""

    def abort(self) -> None:
        """Discard what was written (the payload is incomplete or corrupt)."""


class MemorySink:
    """Assembles a payload in one preallocated ``bytearray``."""

    __slots__ = ("_buffer", "_view")

    def __init__(self, size: int) -> None:
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)

    def write(self, offset: int, data: BufferLike) -> None:
        n = len(data)
        self._view[offset : offset + n] = data

    def finish(self) -> memoryview:
        return self._view.toreadonly()

    def abort(self) -> None:
        self._view.release()
        self._buffer = bytearray()


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
