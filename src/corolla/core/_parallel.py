"""Element-wise passes over large arrays, split across a few threads.

NumPy releases the GIL for element-wise work on large arrays (copies, sums, quotients), so
slices of one array can be processed at once on several cores. Each element gets the
same operation whatever the split, so the result has the same bits. On a virtual machine
the page faults of memory touched for the first time can cost more than the pass itself;
split, they are taken on several cores at once too.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["PARALLEL_BYTES", "split_work"]

#: Element-wise passes over arrays at least this large are split across threads.
PARALLEL_BYTES = 32 << 20
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> int:
    return min(os.cpu_count() or 1, 4)


def split_work(size: int, itemsize: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(start, stop)`` over ``range(size)`` (elements of ``itemsize`` bytes): in
    one call for a small array, or over contiguous slices on a few threads (one per core,
    at most 4) for one of :data:`PARALLEL_BYTES` or more. For element-wise passes only."""
    threads = _threads()
    if threads < 2 or size * itemsize < PARALLEL_BYTES:
        work(0, size)
        return
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="corolla-kernels")
        pool = _pool
    bounds = [size * i // threads for i in range(threads + 1)]
    futures = [pool.submit(work, a, b) for a, b in itertools.pairwise(bounds)]
    for future in futures:
        future.result()
