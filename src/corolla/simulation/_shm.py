"""Objects handed between processes through shared memory, without per-reader copies.

An object is pickled with protocol 5: its large array buffers go out-of-band into one
shared memory segment, the small pickle travels over the pipe. Readers map the segment and
unpickle against read-only views of it, so a 100 MB model placed once is read by every
worker without being copied or pickled again.
"""

from __future__ import annotations

import dataclasses
import pickle
from multiprocessing import shared_memory
from typing import Any

__all__ = ["Payload", "SegmentCache", "pack", "unpack"]

# Below this many out-of-band bytes, buffers travel in-band with the pickle.
INLINE_LIMIT = 1 << 20


@dataclasses.dataclass(frozen=True)
class Payload:
    """A pickled object whose buffers lie in-band or in a named shared memory segment."""

    data: bytes
    segment: str | None = None
    spans: tuple[tuple[int, int], ...] = ()


def pack(obj: Any) -> tuple[Payload, shared_memory.SharedMemory | None]:
    """Pickle ``obj``; return the payload and the segment the caller must unlink later."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    total = sum(v.nbytes for v in views)
    if total < INLINE_LIMIT:
        return Payload(pickle.dumps(obj, protocol=5)), None
    segment = shared_memory.SharedMemory(create=True, size=max(total, 1))
    spans = []
    offset = 0
    for view in views:
        segment.buf[offset : offset + view.nbytes] = view
        spans.append((offset, view.nbytes))
        offset += view.nbytes
    for b in buffers:
        b.release()
    return Payload(data, segment.name, tuple(spans)), segment


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
    base = segment.buf.toreadonly()
    buffers = [base[off : off + size] for off, size in payload.spans]
    return pickle.loads(payload.data, buffers=buffers)


def release(segment: shared_memory.SharedMemory, *, unlink: bool) -> bool:
    """Close (and optionally unlink) a segment; False if arrays still view it."""
    if unlink:
        try:
            segment.unlink()
        except FileNotFoundError:
            pass
    try:
        segment.close()
    except BufferError:
        return False
    return True


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

    def retain_only(self, names: set[str]) -> None:
        """Close every segment not in ``names`` (those still viewed are retried later)."""
        for name in list(self._open):
            if name not in names:
                self._closing.append(self._open.pop(name))
        self._closing = [s for s in self._closing if not release(s, unlink=False)]

    def close(self) -> None:
        self.retain_only(set())
