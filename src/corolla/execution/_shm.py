"""Objects handed between processes through shared memory, without per-reader copies.

An object is pickled with protocol 5: its large array buffers go out-of-band into one
shared memory segment, the small pickle travels over the pipe. Readers map the segment and
unpickle against read-only views of it, so a 100 MB model placed once is read by every
worker without being copied or pickled again.

Writers take segments from a :class:`SegmentPool` and get them back once every reader has
let go: the first write to a fresh segment faults in every page of it, which costs several
times the copy itself, so a segment is written fresh once and reused round after round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from ..tuning import split_work

__all__ = [
    "Payload",
    "SegmentCache",
    "SegmentPool",
    "abandon",
    "attach",
    "carve",
    "carved_size",
    "pack",
    "release",
    "unpack",
]

# Below this many out-of-band bytes, buffers travel in-band with the pickle. Above it, one
# copy into a reused segment costs less than the pipe's copies in and out of the kernel.
INLINE_LIMIT = 1 << 16


@dataclasses.dataclass(frozen=True)
class Payload:
    """A pickled object whose buffers lie in-band or in a named shared memory segment."""

    data: bytes
    segment: str | None = None
    spans: tuple[tuple[int, int], ...] = ()


#: Free segments a pool keeps for reuse: any number while they hold at most
#: :data:`POOL_FREE_BYTES` together (a round's many small results, such as replies
#: shipped one by one, are written into the same segments next round), and at least
#: :data:`POOL_FREE_LIMIT` whatever their size (a few large models). Beyond both, the
#: smallest are unlinked.
POOL_FREE_LIMIT = 4
POOL_FREE_BYTES = 64 * 1024 * 1024


class SegmentPool:
    """Segments this process created, handed out again once their readers are done.

    A segment is busy from :meth:`acquire` until :meth:`release`; the pool unlinks free
    segments beyond :data:`POOL_FREE_LIMIT`, and all of them on :meth:`close`.
    """

    def __init__(self) -> None:
        self._free: list[shared_memory.SharedMemory] = []
        self._free_bytes = 0
        self._busy: dict[str, shared_memory.SharedMemory] = {}

    def acquire(self, size: int) -> shared_memory.SharedMemory:
        """A segment of at least ``size`` bytes: the smallest free one that fits, or a new one.

        A free segment more than twice too large is left for larger payloads.
        """
        fitting = [s for s in self._free if size <= s.size <= 2 * size + INLINE_LIMIT]
        if fitting:
            segment = min(fitting, key=lambda s: s.size)
            self._free.remove(segment)
            self._free_bytes -= segment.size
        else:
            segment = shared_memory.SharedMemory(create=True, size=max(size, 1))
        self._busy[segment.name] = segment
        return segment

    def release(self, name: str) -> None:
        """Make a busy segment available again (unknown names are ignored)."""
        segment = self._busy.pop(name, None)
        if segment is None:
            return
        self._free.append(segment)
        self._free_bytes += segment.size
        if len(self._free) > POOL_FREE_LIMIT and self._free_bytes > POOL_FREE_BYTES:
            self._free.sort(key=lambda s: s.size)
            while len(self._free) > POOL_FREE_LIMIT and self._free_bytes > POOL_FREE_BYTES:
                smallest = self._free.pop(0)
                self._free_bytes -= smallest.size
                release(smallest, unlink=True)

    def close(self) -> None:
        """Unlink every segment; readers that still map one keep their mapping."""
        for segment in [*self._free, *self._busy.values()]:
            if not release(segment, unlink=True):
                abandon(segment)
        self._free = []
        self._free_bytes = 0
        self._busy = {}


def pack(
    obj: Any,
    pool: SegmentPool | None = None,
    *,
    within: shared_memory.SharedMemory | None = None,
) -> tuple[Payload, shared_memory.SharedMemory | None]:
    """Pickle ``obj`` and return the payload and the segment holding its buffers, if any.

    With a ``pool``, the segment comes from it and goes back with ``pool.release``;
    without one it is new, and the caller must unlink it once readers are done. When every
    buffer already lies in ``within`` (arrays written straight into a segment of the
    pool), the payload names that segment and nothing is copied.
    """
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    total = sum(v.nbytes for v in views)
    spans = _spans_within(views, within) if within is not None and views else None
    if spans is not None and within is not None:
        for b in buffers:
            b.release()
        return Payload(data, within.name, spans), within
    if total < INLINE_LIMIT:
        return Payload(pickle.dumps(obj, protocol=5)), None
    if pool is not None:
        segment = pool.acquire(total)
    else:
        segment = shared_memory.SharedMemory(create=True, size=max(total, 1))
    copied = []
    offset = 0
    target = _buffer(segment)
    for view in views:
        _copy(target[offset : offset + view.nbytes], view)
        copied.append((offset, view.nbytes))
        offset += view.nbytes
    for b in buffers:
        b.release()
    return Payload(data, segment.name, tuple(copied)), segment


def _copy(target: memoryview, source: memoryview) -> None:
    """``target[:] = source``; a large buffer on a few threads (fresh shared memory faults
    in on several cores at once)."""
    dst = np.frombuffer(target, dtype=np.uint8)
    src = np.frombuffer(source, dtype=np.uint8)

    def work(start: int, stop: int) -> None:
        np.copyto(dst[start:stop], src[start:stop])

    split_work(dst.size, 1, work)


def _address(view: memoryview) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


def _spans_within(
    views: list[memoryview], segment: shared_memory.SharedMemory
) -> tuple[tuple[int, int], ...] | None:
    """Where each view lies in ``segment``, or None if one lies outside it."""
    base = _address(_buffer(segment))
    spans = []
    for view in views:
        offset = _address(view) - base if view.nbytes else 0
        if offset < 0 or offset + view.nbytes > segment.size:
            return None
        spans.append((offset, view.nbytes))
    return tuple(spans)


def carve(
    segment: shared_memory.SharedMemory, layout: list[tuple[int, np.dtype[Any]]]
) -> list[np.ndarray[Any, Any]]:
    """Flat arrays of ``layout``'s sizes and dtypes laid out one after another in
    ``segment`` (each at a 64-byte boundary); see :func:`carved_size`."""
    buffer = _buffer(segment)
    offsets = _offsets(layout)
    return [
        np.frombuffer(buffer, dtype=dtype, count=size, offset=offset)
        for (size, dtype), offset in zip(layout, offsets, strict=False)
    ]


def carved_size(layout: list[tuple[int, np.dtype[Any]]]) -> int:
    """Bytes a segment needs to :func:`carve` ``layout`` from it."""
    return _offsets(layout)[-1]


def _offsets(layout: list[tuple[int, np.dtype[Any]]], alignment: int = 64) -> list[int]:
    """Where each array of ``layout`` starts, then where the last one's space ends."""
    offsets = [0]
    for size, dtype in layout:
        end = offsets[-1] + size * dtype.itemsize
        offsets.append(-(-end // alignment) * alignment)
    return offsets


def _buffer(segment: shared_memory.SharedMemory) -> memoryview:
    buf = segment.buf
    if buf is None:
        raise ValueError(f"shared memory segment {segment.name} is closed")
    return buf


def attach(name: str) -> shared_memory.SharedMemory:
    """Map an existing segment without making this process responsible for unlinking it."""
    # Worker processes share their parent's resource tracker, which keeps a set of names:
    # attaching re-adds a name already there, and the one unlink removes it.
    return shared_memory.SharedMemory(name=name)


def unpack(payload: Payload, segment: shared_memory.SharedMemory | None = None) -> Any:
    """Rebuild the object; its arrays are read-only views of the shared segment."""
    if payload.segment is None:
        return pickle.loads(payload.data)
    if segment is None:
        raise ValueError("payload lies in shared memory; pass its attached segment")
    base = _buffer(segment).toreadonly()
    buffers = [base[off : off + size] for off, size in payload.spans]
    return pickle.loads(payload.data, buffers=buffers)


def release(segment: shared_memory.SharedMemory, *, unlink: bool) -> bool:
    """Close (and optionally unlink) a segment; False if arrays still view it."""
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            segment.unlink()
    try:
        segment.close()
    except BufferError:
        return False
    return True


def abandon(segment: shared_memory.SharedMemory) -> None:
    """Let go of a segment that arrays still view; the mapping ends with the last of them."""
    # close() refuses while views exist, and so does the finalizer, noisily, at exit. The
    # views hold the mapping themselves, so this object's references to it can just go.
    setattr(segment, "_buf", None)  # noqa: B010
    setattr(segment, "_mmap", None)  # noqa: B010
    segment.close()


class SegmentCache:
    """Segments a process has attached, closed once nothing views them any more."""

    def __init__(self) -> None:
        self._open: dict[str, shared_memory.SharedMemory] = {}
        self._closing: list[shared_memory.SharedMemory] = []

    def get(self, name: str) -> shared_memory.SharedMemory:
        segment = self._open.get(name)
        if segment is None:
            segment = attach(name)
            self._open[name] = segment
        return segment

    def load(self, payload: Payload) -> Any:
        segment = self.get(payload.segment) if payload.segment is not None else None
        return unpack(payload, segment)

    def retain_only(self, names: set[str]) -> list[str]:
        """Close every segment not in ``names``; return the names closed by this call.

        A segment that arrays still view stays mapped and is retried on the next call.
        """
        for name in list(self._open):
            if name not in names:
                self._closing.append(self._open.pop(name))
        closed = [s.name for s in self._closing if release(s, unlink=False)]
        self._closing = [s for s in self._closing if s.name not in closed]
        return closed

    def close(self) -> None:
        """Close every segment, leaving those still viewed to their views."""
        self.retain_only(set())
        for segment in self._closing:
            abandon(segment)
        self._closing = []
