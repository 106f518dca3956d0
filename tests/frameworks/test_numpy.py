from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import ArrayRecord, RecordError
from corolla.frameworks import arrays_from_numpy, arrays_to_numpy

DTYPES = [np.dtype(s) for s in ("?", "i1", "i8", "u2", "f2", "f4", "f8", "c8", "c16", ">f8")]

array_lists = st.lists(
    hnp.arrays(
        st.sampled_from(DTYPES),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    max_size=6,
)


def assert_same_arrays(got: list[np.ndarray[Any, Any]], want: list[np.ndarray[Any, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        assert g.shape == w.shape
        assert np.array_equal(g, w, equal_nan=w.dtype.kind in "fc")


@given(array_lists)
def test_round_trip_keeps_values_dtypes_shapes_and_order(
    arrays: list[np.ndarray[Any, Any]],
) -> None:
    record = arrays_from_numpy(arrays)

    assert list(record) == [str(i) for i in range(len(arrays))]
    assert_same_arrays(arrays_to_numpy(record), arrays)


@given(array_lists)
def test_nothing_is_copied_by_default(arrays: list[np.ndarray[Any, Any]]) -> None:
    out = arrays_to_numpy(arrays_from_numpy(arrays))

    for original, view in zip(arrays, out, strict=True):
        assert view.base is not None
        if original.size:
            assert np.shares_memory(original, view)
        assert not view.flags.writeable


@given(array_lists)
def test_copy_gives_writable_arrays_of_their_own(arrays: list[np.ndarray[Any, Any]]) -> None:
    record = arrays_from_numpy(arrays)

    out = arrays_to_numpy(record, copy=True)

    assert_same_arrays(out, arrays)
    for original, copy in zip(arrays, out, strict=True):
        assert copy.flags.writeable
        assert copy.flags.c_contiguous
        assert not np.shares_memory(original, copy)


def test_names_are_given_in_order() -> None:
    a, b = np.ones(2), np.zeros((2, 3), np.float32)

    record = arrays_from_numpy([a, b], names=["w", "b"])

    assert list(record) == ["w", "b"]
    assert record["b"].dtype == np.float32
    assert arrays_to_numpy(record)[0] is record["w"]


def test_caller_writes_show_through_the_zero_copy_record() -> None:
    a = np.zeros(3)
    record = arrays_from_numpy([a])

    a[0] = 5.0

    assert record["0"][0] == 5.0
    assert a.flags.writeable  # the caller's array stays writable


@pytest.mark.parametrize(
    ("names", "message"),
    [(["a"], "2 arrays but 1 names"), (["a", "a"], r"unique; repeated: \['a'\]")],
)
def test_bad_names_are_rejected(names: list[str], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        arrays_from_numpy([np.zeros(1), np.zeros(1)], names=names)


@pytest.mark.parametrize(
    "value", [np.array(["x"]), np.array([object()]), np.zeros(2, np.longdouble)]
)
def test_arrays_the_wire_cannot_carry_are_rejected(value: np.ndarray[Any, Any]) -> None:
    with pytest.raises(RecordError, match="entry '0'"):
        arrays_from_numpy([value])


def test_empty_list_gives_empty_record() -> None:
    assert arrays_from_numpy([]) == ArrayRecord()
    assert arrays_to_numpy(ArrayRecord()) == []
