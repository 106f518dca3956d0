"""Handing freed payload buffers back to the system in the link and ServerApp processes.

Both processes move models in 4 MiB chunks on many threads. glibc serves allocations that
large with mmap() at first, but after freeing one it raises its threshold so that the
next ones come from the heap, and heaps live in per-thread arenas (up to eight per core)
that keep what was freed: a link serving a 100 MB model to four nodes ended up holding
hundreds of MB of chunks it no longer used. A fixed threshold keeps every chunk an mmap
of its own, unmapped when freed, and fewer arenas bound what the small allocations keep.
"""

from __future__ import annotations

import gc

from ..core._malloc import mallopt

__all__ = ["quiet_garbage_collector", "return_freed_buffers"]

#: Allocations from this size on are mmaps of their own, unmapped when freed.
MMAP_THRESHOLD = 1024 * 1024
ARENA_MAX = 2


def return_freed_buffers() -> bool:
    """Tune glibc's malloc in this process as above; False where there is no mallopt."""
    return mallopt(M_MMAP_THRESHOLD=MMAP_THRESHOLD, M_ARENA_MAX=ARENA_MAX)


#: Young objects allocated (net) before a collection of the youngest generation, and
#: collections of one generation before one of the next.
GC_THRESHOLDS = (20_000, 50, 50)


def quiet_garbage_collector() -> None:
    """Collect cycles less often in a long-running server process.

    A link serving a thousand nodes allocates short-lived objects (requests, futures,
    coroutine frames) by the million each minute; at Python's default thresholds the
    collector ran dozens of times a second and took 5 % of the process's CPU, mostly
    re-walking long-lived objects. Everything allocated so far (modules, servers) is
    frozen out of the collector's view, and collections are rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
