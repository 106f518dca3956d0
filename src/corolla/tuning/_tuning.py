"""Process tuning: glibc's allocator, NumPy's huge pages, the garbage collector, and the
threads that split element-wise passes over large arrays.

Everything here changes how this process allocates or schedules, never what it computes,
and is called by the process's owner: the simulation's workers (:func:`keep_freed_memory`),
the link, its ServerApps and the node (:func:`return_freed_buffers`), long-running servers
(:func:`quiet_garbage_collector`), and the aggregation kernels (:class:`SplitWork`).

**Allocator.** Simulation workers want freed memory kept (the next round's arrays reuse it
instead of faulting in fresh pages); the link and the ServerApp want freed 4 MiB chunks
handed back (they would otherwise pile up in per-thread arenas). Both set options with
``mallopt``. The link, the ServerApp and the node move models in 4 MiB chunks on many
threads. Left alone, glibc serves allocations that large with mmap() at first, then raises
its threshold after each free so that the next ones come from the heap, and heaps live in
per-thread arenas (up to eight per core) that keep what was freed: a link serving a 100 MB
model to four nodes ended up holding hundreds of MB of chunks it no longer used. A
threshold fixed at 1 MiB fixed that, but then every chunk was a fresh mapping, faulted in
page by page and unmapped when freed: the link spent three quarters of its CPU in the
kernel, handling 100,000 page faults a second. So the threshold is fixed above a chunk
(chunks come from the heap and their memory is reused by the next ones), the heap keeps up
to :data:`TRIM_THRESHOLD` free before handing memory back, and two arenas bound what the
many threads can hold; whole arrays (tens of MB and more) are still mappings of their own,
returned when freed.

**Huge pages.** NumPy asks the kernel for transparent huge pages (2 MiB) for its large
arrays. On a virtual machine whose memory balloon reports free pages to the host, memory
the process has not touched yet costs far more to fault in as huge pages than as small
ones: on a 2-vCPU guest, 200 MB took 0.45-0.6 s to fault in as huge pages and 0.11-0.13 s
as 4 KiB pages, whereas memory freed and taken again within a second or two (before it is
reported) is cheap either way. :func:`small_pages_preferred` detects such a machine, and
:func:`numpy_huge_pages` switches NumPy's request off for a block of code.

**Split work.** NumPy releases the GIL for element-wise work on large arrays (copies,
sums, quotients), so slices of one array can be processed at once on several cores. Each
element gets the same operation whatever the split, so the result has the same bits. On a
virtual machine the page faults of memory touched for the first time can cost more than
the pass itself; split, they are taken on several cores at once too.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = [
    "GC_THRESHOLDS",
    "M_ARENA_MAX",
    "M_MMAP_MAX",
    "M_MMAP_THRESHOLD",
    "M_TRIM_THRESHOLD",
    "PARALLEL_BYTES",
    "SplitWork",
    "array_pages_for_this_machine",
    "keep_freed_memory",
    "mallopt",
    "malloc_trim",
    "numpy_huge_pages",
    "quiet_garbage_collector",
    "quiet_garbage_collector_while",
    "reports_free_pages",
    "return_freed_buffers",
    "small_pages_preferred",
    "split_work",
]

# glibc's mallopt() parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_PARAMETERS = {
    "M_TRIM_THRESHOLD": M_TRIM_THRESHOLD,
    "M_MMAP_THRESHOLD": M_MMAP_THRESHOLD,
    "M_MMAP_MAX": M_MMAP_MAX,
    "M_ARENA_MAX": M_ARENA_MAX,
}


def mallopt(**options: int) -> bool:
    """Set glibc malloc options, e.g. ``mallopt(M_MMAP_MAX=0)``; False where the C library
    has no ``mallopt`` (not Linux, not glibc) or refused one of them.

    Raises
    ------
    ValueError
        For a parameter name not among this module's ``M_*`` constants.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        function = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    unknown = sorted(set(options) - set(_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown mallopt parameters {unknown}; known: {sorted(_PARAMETERS)}")
    return all([bool(function(_PARAMETERS[name], value)) for name, value in options.items()])


def malloc_trim() -> bool:
    """Hand the free memory of glibc's heaps back to the system (``malloc_trim(0)``);
    False where the C library has none (not Linux, not glibc) or nothing was released."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(function(0))


#: Where Linux lists the devices bound to the virtio memory balloon driver.
BALLOON_DEVICES = Path("/sys/bus/virtio/drivers/virtio_balloon")
#: The feature bit of a balloon that reports free pages to the host
#: (``VIRTIO_BALLOON_F_REPORTING``); ``features`` lists bits as '0'/'1' from bit 0 on.
FREE_PAGE_REPORTING_BIT = 5
#: NumPy's own switch for huge pages; where set, the user decided.
NUMPY_HUGEPAGE_VARIABLE = "NUMPY_MADVISE_HUGEPAGE"


def reports_free_pages(devices: Path = BALLOON_DEVICES) -> bool:
    """True on a virtual machine whose memory balloon reports free pages to the host."""
    try:
        for features in devices.glob("virtio*/features"):
            bits = features.read_text().strip()
            if len(bits) > FREE_PAGE_REPORTING_BIT and bits[FREE_PAGE_REPORTING_BIT] == "1":
                return True
    except OSError:
        return False
    return False


def small_pages_preferred(devices: Path = BALLOON_DEVICES) -> bool:
    """Whether NumPy's large arrays should get small pages here: on a machine that reports
    free pages to its host, unless ``NUMPY_MADVISE_HUGEPAGE`` is set (then NumPy follows it)."""
    return NUMPY_HUGEPAGE_VARIABLE not in os.environ and reports_free_pages(devices)


def _set_numpy_huge_pages(enabled: bool) -> bool | None:
    """Set whether NumPy asks for huge pages; the previous setting, or None if NumPy has
    no such switch."""
    import numpy as np

    # NumPy 2 keeps it in numpy._core, NumPy 1 in numpy.core; neither stub declares it.
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None)
    if multiarray is None:
        multiarray = getattr(getattr(np, "core", None), "multiarray", None)
    switch = getattr(multiarray, "_set_madvise_hugepage", None)
    if switch is None:
        return None
    return bool(switch(enabled))


@contextlib.contextmanager
def numpy_huge_pages(enabled: bool) -> Iterator[None]:
    """NumPy asks for huge pages for its large arrays inside the block as ``enabled`` says;
    the setting is restored on exit."""
    previous = _set_numpy_huge_pages(enabled)
    try:
        yield
    finally:
        if previous is not None:
            _set_numpy_huge_pages(previous)


@contextlib.contextmanager
def array_pages_for_this_machine() -> Iterator[None]:
    """Inside the block, NumPy's large arrays get small pages where
    :func:`small_pages_preferred` says so, and NumPy's default elsewhere."""
    if small_pages_preferred():
        with numpy_huge_pages(False):
            yield
    else:
        yield


# Allocation profiles of Corolla's processes.

#: Allocations from this size on are mmaps of their own, unmapped when freed: above a
#: chunk (4 MiB and its framing), below a model's arrays.
MMAP_THRESHOLD = 8 * 1024 * 1024
#: Free memory at the top of the heap kept for the next allocations.
TRIM_THRESHOLD = 64 * 1024 * 1024
ARENA_MAX = 2


def return_freed_buffers() -> bool:
    """Tune glibc's malloc for a process that moves models in chunks on many threads (the
    link, a ServerApp, a node; see the module); False where there is no mallopt."""
    return mallopt(
        M_MMAP_THRESHOLD=MMAP_THRESHOLD, M_TRIM_THRESHOLD=TRIM_THRESHOLD, M_ARENA_MAX=ARENA_MAX
    )


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep the memory freed in this process for later allocations;
    False where there is no mallopt.

    glibc serves each allocation above 32 MiB (a large model's arrays) with a fresh mmap()
    and unmaps it when freed. The next one is then faulted in page by page, which costs
    several times writing it, and far more on virtual machines that hand freed memory back
    to the host. A simulation worker allocates arrays of the same few sizes call after
    call, so it keeps them in its heap instead: its memory stays at its high-water mark.
    """
    return mallopt(M_MMAP_MAX=0, M_TRIM_THRESHOLD=2**31 - 1)


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


@contextlib.contextmanager
def quiet_garbage_collector_while() -> Iterator[None]:
    """:func:`quiet_garbage_collector` for a block of code, in a process Corolla does not
    own (a simulation's ServerApp runs in the caller's process): the collector's
    thresholds come back on the way out, and the objects frozen on the way in are handed
    back to it, unless something froze objects before (then nothing is frozen here).

    A ServerApp driving a thousand virtual nodes through a Flower strategy holds each
    round's replies (thousands of small objects each) until it aggregates them, and the
    collector re-walked every module and array object several times a round; at these
    thresholds, with those frozen, it took a third less of the ServerApp's time.
    """
    thresholds = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freeze:
            gc.unfreeze()


# Element-wise passes split across threads.

#: Element-wise passes over arrays at least this large are split across threads.
PARALLEL_BYTES = 32 << 20


class SplitWork:
    """Runs element-wise passes over large arrays on a few threads (one per core, at most
    ``max_threads``), started with the first large pass and stopped by :meth:`stop`.

    Parameters
    ----------
    parallel_bytes
        Passes over fewer bytes than this run in the calling thread.
    max_threads
        The most threads a pass is split across.
    """

    def __init__(self, parallel_bytes: int = PARALLEL_BYTES, max_threads: int = 4) -> None:
        self.parallel_bytes = parallel_bytes
        self._threads = min(os.cpu_count() or 1, max_threads)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, size: int, itemsize: int, work: Callable[[int, int], None]) -> None:
        """Run ``work(start, stop)`` over ``range(size)`` (elements of ``itemsize`` bytes):
        in one call for a small array, or over contiguous slices on the threads for one of
        :attr:`parallel_bytes` or more. For element-wise passes only."""
        threads = self._threads
        if threads < 2 or size * itemsize < self.parallel_bytes:
            work(0, size)
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="corolla-kernels")
            pool = self._pool
        bounds = [size * i // threads for i in range(threads + 1)]
        futures = [pool.submit(work, a, b) for a, b in itertools.pairwise(bounds)]
        for future in futures:
            future.result()

    def stop(self) -> None:
        """Join the threads (a later pass starts them again)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


#: The process's passes: kernels deep inside aggregators call it, and an aggregator
#: travels to simulation workers by pickle, so it cannot carry a pool of its own.
split_work = SplitWork()
