"""Hypothesis strategies shared by the data tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray


@st.composite
def label_arrays(
    draw: st.DrawFn, *, min_size: int = 1, max_size: int = 300, max_classes: int = 8
) -> NDArray[np.int64]:
    """1-D int64 label arrays over ``0 .. k - 1`` for a drawn ``k``."""
    num_classes = draw(st.integers(1, max_classes))
    size = draw(st.integers(min_size, max_size))
    return draw(hnp.arrays(np.int64, size, elements=st.integers(0, num_classes - 1)))


seeds = st.integers(0, 2**32 - 1)


def assert_exact_cover(partitions: list[NDArray[np.int64]], num_samples: int) -> None:
    """Every index in ``0 .. num_samples - 1`` appears in exactly one sorted int64 part."""
    for part in partitions:
        assert part.dtype == np.int64
        assert part.ndim == 1
        assert np.all(np.diff(part) > 0), "indices must be sorted and unique"
    merged = np.sort(np.concatenate(partitions)) if partitions else np.array([], np.int64)
    np.testing.assert_array_equal(merged, np.arange(num_samples))


def assert_same_partitions(a: list[NDArray[np.int64]], b: list[NDArray[np.int64]]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
