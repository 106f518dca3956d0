"""Tuning glibc's malloc for processes that move model-sized buffers around.

Simulation workers want freed memory kept (the next round's arrays reuse it instead of
faulting in fresh pages); the link and the ServerApp want freed 4 MiB chunks handed back
(they would otherwise pile up in per-thread arenas). Both set options with ``mallopt``.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["M_ARENA_MAX", "M_MMAP_MAX", "M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD", "mallopt"]

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
