from __future__ import annotations

import ctypes
import gc
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from corolla.tuning._tuning import (
    GC_THRESHOLDS,
    _set_numpy_huge_pages,
    malloc_trim,
    mallopt,
    numpy_huge_pages,
    quiet_garbage_collector_while,
    reports_free_pages,
    small_pages_preferred,
)


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


@pytest.mark.skipif(not _has_glibc_mallopt(), reason="needs glibc")
def test_malloc_trim_hands_back_the_free_memory_of_the_heaps() -> None:
    # Blocks from the heap (not mappings of their own), every other one freed: the holes
    # between those kept are free memory that only a trim hands back.
    blocks = [bytearray(64 * 1024) for _ in range(2000)]
    for block in blocks:
        block[0] = 1
    kept = blocks[::2]
    del blocks, block

    assert malloc_trim() is True
    assert len(kept) == 1000


def test_an_unknown_parameter_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="M_TOP_PAD"):
        mallopt(M_TOP_PAD=0)


def _balloon(root: Path, features: str) -> Path:
    device = root / "virtio3"
    device.mkdir(parents=True)
    (device / "features").write_text(features + "\n")
    return root


REPORTING = "0110010" + "0" * 57  # bit 5: VIRTIO_BALLOON_F_REPORTING
NOT_REPORTING = "0110000" + "0" * 57


def test_a_balloon_that_reports_free_pages_is_detected(tmp_path: Path) -> None:
    assert reports_free_pages(_balloon(tmp_path / "on", REPORTING))
    assert not reports_free_pages(_balloon(tmp_path / "off", NOT_REPORTING))
    assert not reports_free_pages(tmp_path / "no-balloon-driver")


def test_numpy_s_own_variable_overrides_the_detection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices = _balloon(tmp_path, REPORTING)
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    detected = small_pages_preferred(devices)
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    overridden = small_pages_preferred(devices)

    assert detected
    assert not overridden


def test_numpy_huge_pages_restores_the_setting_it_found() -> None:
    before = _set_numpy_huge_pages(True)
    try:
        with numpy_huge_pages(False):
            inside = _set_numpy_huge_pages(False)
            arrays_work = np.ones(3_000_000, dtype=np.float32).sum() == 3_000_000
        after = _set_numpy_huge_pages(True)
    finally:
        _set_numpy_huge_pages(bool(before))

    assert inside is False
    assert after is True
    assert arrays_work


def test_a_quiet_collector_for_a_block_leaves_the_collector_as_it_found_it() -> None:
    # Arrange: a fresh interpreter, whose collector nothing has touched
    script = textwrap.dedent(
        """
        import gc, json
        from corolla.tuning import quiet_garbage_collector_while
        before = [list(gc.get_threshold()), gc.get_freeze_count()]
        with quiet_garbage_collector_while():
            inside = [list(gc.get_threshold()), gc.get_freeze_count()]
        after = [list(gc.get_threshold()), gc.get_freeze_count()]
        print(json.dumps([before, inside, after]))
        """
    )

    # Act
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    before, inside, after = json.loads(done.stdout)

    # Assert: quiet inside (thresholds raised, what existed frozen), as found after
    assert before[1] == 0
    assert inside[0] == list(GC_THRESHOLDS) and inside[1] > 0
    assert after == before


def test_a_quiet_collector_for_a_block_keeps_what_its_caller_froze() -> None:
    # Arrange: the caller froze its objects itself
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        # Act
        with quiet_garbage_collector_while():
            pass

        # Assert: still frozen, no more, no less
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
