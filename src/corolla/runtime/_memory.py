"""Handing freed payload buffers back to the system in the link and ServerApp processes.

Both processes move models in 4 MiB chunks on many threads. glibc serves allocations that
large with mmap() at first, but after freeing one it raises its threshold so that the
next ones come from the heap, and heaps live in per-thread arenas (up to eight per core)
that keep what was freed: a link serving a 100 MB model to four nodes ended up holding
hundreds of MB of chunks it no longer used. A fixed threshold keeps every chunk an mmap
of its own, unmapped when freed, and fewer arenas bound what the small allocations keep.
"""

from __future__ import annotations

from ..core._malloc import mallopt

__all__ = ["return_freed_buffers"]

#: Allocations from this size on are mmaps of their own, unmapped when freed.
MMAP_THRESHOLD = 1024 * 1024
ARENA_MAX = 2


def return_freed_buffers() -> bool:
    """Tune glibc's malloc in this process as above; False where there is no mallopt."""
    return mallopt(M_MMAP_THRESHOLD=MMAP_THRESHOLD, M_ARENA_MAX=ARENA_MAX)
