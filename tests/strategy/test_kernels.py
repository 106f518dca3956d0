from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import ArrayRecord, MetricRecord, RecordDict
from corolla.strategy import WeightedAverage
from corolla.strategy._kernels import (
    accumulator_dtype,
    all_finite,
    cast_mean,
    fold_into,
    new_scratch,
    split_work,
)
from corolla.tuning import PARALLEL_BYTES
from corolla.tuning import split_work as kernel_threads
from tests.core.strategies import ALL_DTYPES, WIRE_DTYPES, arrays

from .strategies import FLOAT_DTYPES, elements

F8 = np.dtype(np.float64)


def block_size() -> int:
    """Elements the kernels process per step (a tuning constant, read rather than pinned)."""
    return new_scratch(F8, 10**9).size


def reference_axpy(acc: np.ndarray, x: np.ndarray, weight: float) -> np.ndarray:
    """``acc + weight * x`` with ``x`` first converted to ``acc``'s dtype: what the kernel
    computes, written the obvious way."""
    return acc + x.astype(acc.dtype) * acc.dtype.type(weight)


@pytest.mark.parametrize("dtype", WIRE_DTYPES, ids=str)
def test_accumulator_dtype_is_float64_or_complex128(dtype: np.dtype[Any]) -> None:
    expected = np.complex128 if dtype.kind == "c" else np.float64

    assert accumulator_dtype(dtype) == np.dtype(expected)


# all_finite


@given(arrays(dtype=st.sampled_from(ALL_DTYPES)))
def test_all_finite_agrees_with_isfinite(x: np.ndarray) -> None:
    # Arbitrary bit patterns: every NaN payload, infinities, subnormals, both byte orders.
    with np.errstate(all="ignore"):
        expected = x.dtype.kind not in "fc" or bool(np.isfinite(x).all())

        assert all_finite(x) is expected


@pytest.mark.parametrize(
    "values",
    [
        np.array([60000.0, 60000.0], np.float16),  # the float16 sum overflows
        np.array([1.7e308, 1.7e308]),  # so does the float64 one
        np.array([3e38, 3e38], np.float32),
        np.array([np.finfo(np.float64).max, -np.finfo(np.float64).max]),
    ],
    ids=["f2", "f8", "f4", "f8-cancel"],
)
def test_all_finite_is_true_for_finite_values_whose_sum_overflows(values: np.ndarray) -> None:
    with np.errstate(all="ignore"):
        assert all_finite(values)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8", "<c8", "<c16", ">f4"])
def test_all_finite_finds_a_single_non_finite_element(bad: float, dtype: str) -> None:
    x = np.zeros(1000, dtype)
    x[637] = bad

    assert not all_finite(x)


def test_all_finite_of_empty_bool_and_integer_arrays() -> None:
    assert all_finite(np.zeros(0, np.float32))
    assert all_finite(np.array([True, False]))
    assert all_finite(np.array([np.iinfo(np.int64).max] * 3))


def test_all_finite_is_quiet_about_its_own_overflow() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        assert all_finite(np.array([60000.0, 60000.0], np.float16))


# fold_into


@given(st.data())
def test_fold_into_matches_the_reference_bit_for_bit(data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from([*FLOAT_DTYPES, np.dtype("<i4"), np.dtype("<c8")]))
    size = data.draw(st.integers(0, 40))
    x = data.draw(hnp.arrays(dtype, size, elements=elements(dtype)))
    acc_dtype = accumulator_dtype(dtype)
    acc = data.draw(hnp.arrays(acc_dtype, size, elements=elements(acc_dtype)))
    weight = data.draw(st.one_of(st.integers(0, 1000), st.floats(0, 1e6)))
    expected = reference_axpy(acc, x, weight)
    x_before = x.copy()

    with np.errstate(all="ignore"):
        fold_into(acc, x, weight, new_scratch(acc_dtype, size))

    assert acc.tobytes() == expected.tobytes()
    assert x.tobytes() == x_before.tobytes()


def test_fold_into_blocks_large_arrays_with_the_same_result() -> None:
    rng = np.random.default_rng(7)
    size = 2 * block_size() + 123
    x = rng.standard_normal(size).astype(np.float32)
    acc = rng.standard_normal(size)
    expected = reference_axpy(acc, x, 3.0)
    scratch = new_scratch(F8, size)

    fold_into(acc, x, 3.0, scratch)

    assert scratch.size < size
    assert acc.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("<f2", "<f4"),
        ("<f4", "<f4"),
        ("<f8", "<f8"),
        ("<c8", "<c8"),
        ("<i4", "<f8"),
        ("|b1", "<f8"),
    ],
)
def test_native_accumulators_keep_the_float_dtype(dtype: str, expected: str) -> None:
    assert accumulator_dtype(np.dtype(dtype), "native") == np.dtype(expected)


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        accumulator_dtype(np.dtype("<f4"), "float128")


@given(st.data())
def test_fold_into_with_assign_writes_weight_times_x(data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from([*FLOAT_DTYPES, np.dtype("<i4"), np.dtype("<c8")]))
    precision = data.draw(st.sampled_from(["float64", "native"]))
    size = data.draw(st.integers(0, 40))
    x = data.draw(hnp.arrays(dtype, size, elements=elements(dtype)))
    acc_dtype = accumulator_dtype(dtype, precision)
    acc = np.full(size, 12345.0, acc_dtype)  # whatever was there before
    weight = data.draw(st.one_of(st.integers(0, 1000), st.floats(0, 1e6)))
    expected = reference_axpy(np.zeros(size, acc_dtype), x, weight)

    with np.errstate(all="ignore"):
        assert fold_into(acc, x, weight, new_scratch(acc_dtype, size), assign=True)

    assert np.array_equal(acc, expected, equal_nan=True)


@pytest.mark.parametrize("precision", ["float64", "native"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_fold_into_refuses_a_non_finite_update_and_takes_back_its_blocks(
    precision: str, bad: float, where: str
) -> None:
    rng = np.random.default_rng(3)
    size = 3 * block_size() + 17
    x = rng.standard_normal(size).astype(np.float32)
    x[{"first": 5, "middle": 2 * block_size() + 1, "last": size - 1}[where]] = bad
    acc_dtype = accumulator_dtype(x.dtype, precision)
    acc = rng.standard_normal(size).astype(acc_dtype)
    before = acc.copy()

    assert not fold_into(acc, x, 7.0, new_scratch(acc_dtype, size))

    eps = np.finfo(acc_dtype).eps
    largest = np.abs(x[np.isfinite(x)]).max()
    np.testing.assert_allclose(acc, before, rtol=0, atol=4 * eps * (1 + 7 * largest))
    if where == "first":  # nothing was folded yet
        assert acc.tobytes() == before.tobytes()


def test_fold_into_accepts_finite_values_whose_squares_overflow() -> None:
    x = np.full(10, 3e38, np.float32)
    acc = np.zeros(10, np.float32)

    assert fold_into(acc, x, 1.0, new_scratch(acc.dtype, 10))
    assert np.array_equal(acc, x)


@given(
    hnp.arrays(np.float32, st.integers(0, 30), elements=elements(np.dtype(np.float32))),
    st.integers(1, 2**29),
)
def test_float32_times_an_integer_weight_is_exact_in_float64(x: np.ndarray, weight: int) -> None:
    acc = np.zeros(x.size)

    fold_into(acc, x, weight, new_scratch(F8, x.size))

    # Dividing back is exact too: 24 + 29 bits fit the 53 of a float64.
    assert np.array_equal(acc / weight, x.astype(F8))
    assert np.array_equal((acc / weight).astype(np.float32), x)


def test_new_scratch_covers_small_arrays_and_one_block_of_large_ones() -> None:
    for dtype in map(np.dtype, ["<f4", "<f8", "<c16"]):
        block = new_scratch(dtype, 10**9).size

        assert 0 < block < 10**9
        for size in (0, 1, 10, block - 1, block):
            scratch = new_scratch(dtype, size)
            assert scratch.shape == (size,) and scratch.dtype == dtype
        assert new_scratch(dtype, block + 5).shape == (block,)
    # Blocks hold the same bytes whatever the dtype.
    assert new_scratch(np.dtype("<f4"), 10**9).nbytes == new_scratch(F8, 10**9).nbytes


# cast_mean


def test_cast_mean_divides_and_casts_floats() -> None:
    total = np.array([3.0, -1.5, 1e-3])

    mean = cast_mean(total, 3.0, np.dtype(np.float32))

    assert mean.dtype == np.float32
    assert mean.tobytes() == (total / 3.0).astype(np.float32).tobytes()


def test_cast_mean_rounds_integers_half_to_even_and_clips() -> None:
    total = np.array([2.5, 3.5, -2.5, 0.49, 1e30, -1e30])

    assert cast_mean(total, 1.0, np.dtype(np.int8)).tolist() == [2, 4, -2, 0, 127, -128]
    assert cast_mean(total, 1.0, np.dtype(np.uint8)).tolist() == [2, 4, 0, 0, 255, 0]
    assert cast_mean(total, 1.0, np.dtype(np.int32)).dtype == np.int32


def test_cast_mean_thresholds_bools_at_one_half() -> None:
    mean = cast_mean(np.array([0.0, 0.49, 0.5, 1.0]), 1.0, np.dtype(bool))

    assert mean.tolist() == [False, False, True, True]


def test_cast_mean_keeps_complex_values() -> None:
    mean = cast_mean(np.array([3 + 6j, -3j]), 3.0, np.dtype(np.complex64))

    assert mean.dtype == np.complex64
    assert mean.tolist() == [1 + 2j, -1j]


@given(
    st.sampled_from([np.dtype(s) for s in ("|i1", "<i2", "<i4", "|u1", "<u2", "<u4")]),
    st.lists(st.floats(-1e12, 1e12), min_size=1, max_size=20),
    st.floats(1e-3, 1e3),
)
def test_cast_mean_into_integers_stays_in_range(
    dtype: np.dtype[Any], totals: list[float], weight: float
) -> None:
    info = np.iinfo(dtype)

    mean = cast_mean(np.array(totals), weight, dtype)

    assert mean.dtype == dtype
    expected = np.clip(np.rint(np.array(totals) / weight), info.min, info.max)
    assert np.array_equal(mean, expected)


@pytest.mark.xfail(
    strict=True,
    reason="cast_mean clips to float(iinfo(dtype).max), i.e. 2**63 or 2**64, which does not "
    "fit the dtype, so a mean at the top of the range wraps (int64 to its minimum, uint64 to 0)",
)
@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_cast_mean_clips_64_bit_integers_into_range(dtype: type) -> None:
    with np.errstate(all="ignore"):
        mean = cast_mean(np.array([2.0**64]), 1.0, np.dtype(dtype))

    assert mean.tolist() == [np.iinfo(dtype).max]


@given(
    size=st.integers(min_value=0, max_value=5000),
    threshold=st.integers(min_value=1, max_value=20_000),
    weight=st.floats(min_value=0.5, max_value=1e6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_passes_split_across_threads_give_the_same_bits(
    size: int, threshold: int, weight: float, seed: int
) -> None:
    # Arrange: partial sums, merged and averaged whole, then split across threads.
    rng = np.random.default_rng(seed)
    sums = [rng.standard_normal(size) * 1e3 for _ in range(3)]

    def merged_mean() -> np.ndarray:
        root = WeightedAverage()
        for s in sums:
            partial = WeightedAverage()
            metrics = MetricRecord({"num-examples": weight / 3})
            partial.add(RecordDict({"arrays": ArrayRecord({"w": s}), "metrics": metrics}), 1)
            root.merge(partial)
        arrays = root.arrays()
        assert arrays is not None
        return arrays["w"]

    # Act
    whole = merged_mean()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel_threads, "parallel_bytes", threshold)
        split = merged_mean()

    # Assert
    assert whole.tobytes() == split.tobytes()


def test_split_work_covers_every_element_once() -> None:
    seen = np.zeros(PARALLEL_BYTES // 8 + 3, dtype=np.int64)

    def work(start: int, stop: int) -> None:
        seen[start:stop] += 1

    split_work(seen.size, 8, work)

    assert (seen == 1).all()
