"""Tuning glibc's malloc for the processes that move models: link, ServerApp and node.

They move models in 4 MiB chunks on many threads. Left alone, glibc serves allocations
that large with mmap() at first, then raises its threshold after each free so that the
next ones come from the heap, and heaps live in per-thread arenas (up to eight per core)
that keep what was freed: a link serving a 100 MB model to four nodes ended up holding
hundreds of MB of chunks it no longer used. A threshold fixed at 1 MiB fixed that, but
then every chunk was a fresh mapping, faulted in page by page and unmapped when freed:
the link spent three quarters of its CPU in the kernel, handling 100,000 page faults a
second. So the threshold is fixed above a chunk (chunks come from the heap and their
memory is reused by the next ones), the heap keeps up to :data:`TRIM_THRESHOLD` free
before handing memory back, and two arenas bound what the many threads can hold; whole
arrays (tens of MB and more) are still mappings of their own, returned when freed.
"""

from __future__ import annotations

import gc

from ..core._malloc import mallopt

__all__ = ["quiet_garbage_collector", "return_freed_buffers"]

#: Allocations from this size on are mmaps of their own, unmapped when freed: above a
#: chunk (4 MiB and its framing), below a model's arrays.
MMAP_THRESHOLD = 8 * 1024 * 1024
#: Free memory at the top of the heap kept for the next allocations.
TRIM_THRESHOLD = 64 * 1024 * 1024
ARENA_MAX = 2


def return_freed_buffers() -> bool:
    """Tune glibc's malloc in this process as above; False where there is no mallopt."""
    return mallopt(
        M_MMAP_THRESHOLD=MMAP_THRESHOLD, M_TRIM_THRESHOLD=TRIM_THRESHOLD, M_ARENA_MAX=ARENA_MAX
    )


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
