"""Shared memory payloads: round trips, segment reuse, and arrays packed where they lie."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corolla.execution._shm import (
    INLINE_LIMIT,
    POOL_FREE_BYTES,
    POOL_FREE_LIMIT,
    SegmentCache,
    SegmentPool,
    carve,
    carved_size,
    pack,
    unpack,
)
from corolla.tuning import split_work

DTYPES = [np.dtype(t) for t in ("float64", "float32", "int8", "complex128", "bool")]


@pytest.fixture
def pool() -> Any:
    pool = SegmentPool()
    yield pool
    pool.close()


def test_a_large_object_travels_through_a_segment_and_a_small_one_in_band(pool) -> None:
    large = {"w": np.arange(INLINE_LIMIT, dtype=np.float32), "n": 3}
    small = {"w": np.arange(10, dtype=np.float32)}

    large_payload, segment = pack(large, pool)
    small_payload, none = pack(small, pool)
    cache = SegmentCache()
    try:
        back = cache.load(large_payload)
        assert segment is not None and large_payload.segment == segment.name
        assert small_payload.segment is None and none is None
        np.testing.assert_array_equal(back["w"], large["w"])
        assert not back["w"].flags.writeable
        np.testing.assert_array_equal(unpack(small_payload)["w"], small["w"])
        del back
    finally:
        cache.close()


def test_a_released_segment_is_handed_out_again(pool) -> None:
    first = pool.acquire(1 << 20)
    name = first.name
    pool.release(name)

    again = pool.acquire(1 << 20)

    assert again.name == name


def test_a_rounds_many_small_segments_are_all_kept_for_the_next_round(pool) -> None:
    # Arrange: a round's results, each in a segment of its own (replies shipped one by one)
    sizes = [(i + 1) * 40_000 for i in range(3 * POOL_FREE_LIMIT)]
    names = {pool.acquire(size).name for size in sizes}
    for name in names:
        pool.release(name)

    # Act: the next round asks for the same sizes
    again = {pool.acquire(size).name for size in sizes}

    # Assert: every one is written into again, none created afresh
    assert again == names


def test_free_segments_beyond_the_byte_budget_are_unlinked_smallest_first(pool) -> None:
    # Arrange: more than POOL_FREE_LIMIT segments holding more than POOL_FREE_BYTES
    size = POOL_FREE_BYTES // POOL_FREE_LIMIT
    big = [pool.acquire(size) for _ in range(POOL_FREE_LIMIT)]
    small = pool.acquire(4096)
    small_name = small.name
    for segment in [small, *big]:
        pool.release(segment.name)

    # Act
    kept = {pool.acquire(size).name for _ in range(POOL_FREE_LIMIT)}
    fresh = pool.acquire(4096)

    # Assert: the large ones stay; the small one went to bring the pool within its budget
    assert kept == {segment.name for segment in big}
    assert fresh.name != small_name


@settings(max_examples=30, deadline=None)
@given(
    layout=st.lists(
        st.tuples(st.integers(min_value=0, max_value=5000), st.sampled_from(DTYPES)),
        min_size=1,
        max_size=5,
    )
)
def test_carved_arrays_are_aligned_apart_and_inside_their_segment(
    layout: list[tuple[int, np.dtype[Any]]],
) -> None:
    pool = SegmentPool()
    try:
        segment = pool.acquire(max(carved_size(layout), 1))
        arrays = carve(segment, layout)
        for a, (size, dtype) in zip(arrays, layout, strict=True):
            assert (a.size, a.dtype) == (size, dtype)
            assert a.flags.writeable
            assert a.ctypes.data % 64 == 0 or a.size == 0
        for i, a in enumerate(arrays):
            a.view(np.uint8)[:] = i + 1
        for i, a in enumerate(arrays):  # no array overlaps the next one
            assert (a.view(np.uint8) == i + 1).all()
        del arrays, a
    finally:
        pool.close()


def test_arrays_already_in_a_segment_are_packed_without_a_copy(pool) -> None:
    # Arrange: accumulators carved from a pool segment, filled in place.
    layout = [(50_000, np.dtype(np.float64)), (7, np.dtype(np.float64))]
    segment = pool.acquire(carved_size(layout))
    big, tiny = carve(segment, layout)
    big[:] = np.arange(big.size)
    tiny[:] = -1.0

    # Act
    payload, used = pack({"sums": [big, tiny], "count": 2}, pool, within=segment)

    # Assert: the payload names the same segment, and reads back what was written there.
    cache = SegmentCache()
    try:
        back = cache.load(payload)
        assert used is segment and payload.segment == segment.name
        np.testing.assert_array_equal(back["sums"][0], big)
        np.testing.assert_array_equal(back["sums"][1], tiny)
        assert back["count"] == 2
        del back
    finally:
        cache.close()
    del big, tiny


def test_arrays_outside_the_given_segment_are_copied_into_another(pool) -> None:
    segment = pool.acquire(1 << 20)
    elsewhere = np.ones(100_000)

    payload, used = pack({"w": elsewhere}, pool, within=segment)

    assert used is not None and used is not segment
    assert payload.segment == used.name


def test_a_large_buffer_copied_on_threads_arrives_whole(
    pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(split_work, "parallel_bytes", 1000)  # split even this one
    model = {"w": np.arange(100_003, dtype=np.float64)}

    payload, _ = pack(model, pool)
    cache = SegmentCache()
    try:
        back = cache.load(payload)
        np.testing.assert_array_equal(back["w"], model["w"])
        del back
    finally:
        cache.close()
