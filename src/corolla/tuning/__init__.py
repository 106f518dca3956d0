"""Process tuning: allocator options, huge pages, garbage collection, kernel threads.

A bottom layer beside :mod:`corolla.core`, which does no I/O: these change how a process
allocates and schedules, never what it computes.
"""

from ._tuning import (
    GC_THRESHOLDS,
    M_ARENA_MAX,
    M_MMAP_MAX,
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    PARALLEL_BYTES,
    SplitWork,
    array_pages_for_this_machine,
    keep_freed_memory,
    malloc_trim,
    mallopt,
    numpy_huge_pages,
    quiet_garbage_collector,
    quiet_garbage_collector_while,
    reports_free_pages,
    return_freed_buffers,
    small_pages_preferred,
    split_work,
)

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
    "malloc_trim",
    "mallopt",
    "numpy_huge_pages",
    "quiet_garbage_collector",
    "quiet_garbage_collector_while",
    "reports_free_pages",
    "return_freed_buffers",
    "small_pages_preferred",
    "split_work",
]
