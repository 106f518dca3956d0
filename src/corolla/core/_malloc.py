"""Tuning glibc's malloc for processes that move model-sized buffers around.

Simulation workers want freed memory kept (the next round's arrays reuse it instead of
faulting in fresh pages); the link and the ServerApp want freed 4 MiB chunks handed back
(they would otherwise pile up in per-thread arenas). Both set options with ``mallopt``.

NumPy asks the kernel for transparent huge pages (2 MiB) for its large arrays. On a
virtual machine whose memory balloon reports free pages to the host, memory the process
has not touched yet costs far more to fault in as huge pages than as small ones: on a
2-vCPU guest, 200 MB took 0.45-0.6 s to fault in as huge pages and 0.11-0.13 s as 4 KiB
pages, whereas memory freed and taken again within a second or two (before it is
reported) is cheap either way. :func:`small_pages_preferred` detects such a machine, and
:func:`numpy_huge_pages` switches NumPy's request off for a block of code.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "M_ARENA_MAX",
    "M_MMAP_MAX",
    "M_MMAP_THRESHOLD",
    "M_TRIM_THRESHOLD",
    "array_pages_for_this_machine",
    "mallopt",
    "malloc_trim",
    "numpy_huge_pages",
    "reports_free_pages",
    "small_pages_preferred",
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
