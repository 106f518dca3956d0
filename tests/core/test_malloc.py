from __future__ import annotations

import ctypes
import sys

import pytest

from corolla.core._malloc import mallopt


def _has_glibc_mallopt() -> bool:
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallopt")
    except OSError:
        return False


@pytest.mark.skipif(not _has_glibc_mallopt(), reason="needs glibc's mallopt")
def test_glibc_accepts_the_options_the_runtimes_set() -> None:
    # The values the link/ServerApp and the simulation workers use (the defaults where a
    # process runs several tests: the trim threshold is restored to glibc's 128 KiB).
    assert mallopt(M_ARENA_MAX=8, M_MMAP_THRESHOLD=128 * 1024)
    assert mallopt(M_TRIM_THRESHOLD=128 * 1024)


def test_an_unknown_parameter_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="M_TOP_PAD"):
        mallopt(M_TOP_PAD=0)
