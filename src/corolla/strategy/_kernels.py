"""Pure numerical kernels of aggregation: arrays in, arrays out, no messages, no I/O."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import split_work

__all__ = [
    "PRECISIONS",
    "accumulator_dtype",
    "all_finite",
    "fold_into",
    "cast_mean",
    "new_scratch",
    "split_work",
]

# Bytes of scratch processed per step (65,536 float64 or 131,072 float32 elements): the
# scratch block and the update block it comes from stay in a core's L2 cache, and blocks
# this long make the per-call cost of NumPy small.
_BLOCK_BYTES = 1 << 19


#: Accumulator precisions :class:`WeightedAverage` offers: float64 sums (the default), or
#: sums in the updates' own floating-point dtype ("native", as Flower's FedAvg sums).
PRECISIONS = ("float64", "native")


def accumulator_dtype(dtype: np.dtype[Any], precision: str = "float64") -> np.dtype[Any]:
    """The dtype sums of ``dtype`` values are accumulated in.

    float64 (complex128 for complex values) by default; with ``precision="native"``, a
    float32/float64/complex array's own dtype (float16 still sums in float32; integers and
    bools in float64).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"accumulator precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "native" and dtype.kind in "fc":
        return np.dtype(np.float32) if dtype.itemsize < 4 else dtype
    return np.dtype(np.complex128) if dtype.kind == "c" else np.dtype(np.float64)


def all_finite(x: np.ndarray[Any, Any]) -> bool:
    """True if ``x`` holds no NaN or infinity (always true for bool and integer arrays)."""
    if x.dtype.kind not in "fc" or x.size == 0:
        return True
    # A fast SIMD sum is finite for almost every finite input; only an overflow of the
    # sum itself (huge but finite values) needs the exact element-wise check.
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(x, axis=None)):
            return True
    return bool(np.isfinite(x).all())


def _block_finite(x: np.ndarray[Any, Any]) -> bool:
    # The sum of squares is a BLAS dot product, several times faster than isfinite over the
    # block; NaN or infinity makes it non-finite, and only an overflow of the sum itself
    # (values beyond about 1e19 in float32) needs the exact element-wise check. BLAS sets
    # no NumPy error flags; float16, which NumPy multiplies itself, would warn on overflow.
    if x.dtype.itemsize >= 4:
        if np.isfinite(np.vdot(x, x)):
            return True
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.vdot(x, x)):
                return True
    return bool(np.isfinite(x).all())


def _axpy_block(
    acc: np.ndarray[Any, Any], x: np.ndarray[Any, Any], w: Any, tmp: np.ndarray[Any, Any]
) -> None:
    # acc += w * x over one cache-sized block. Unit weights skip the product: multiplying a
    # real number by 1 is exact.
    if x.dtype == acc.dtype:
        if w == 1 and acc.dtype.kind == "f":
            np.add(acc, x, out=acc)
            return
        np.multiply(x, w, out=tmp)
    else:
        # Casting inside np.multiply goes through NumPy's small internal buffers, which is
        # markedly slower than a cast into the scratch block followed by the product.
        np.copyto(tmp, x, casting="unsafe")
        if not (w == 1 and acc.dtype.kind == "f"):
            np.multiply(tmp, w, out=tmp)
    np.add(acc, tmp, out=acc)


def _assign_block(
    acc: np.ndarray[Any, Any], x: np.ndarray[Any, Any], w: Any, tmp: np.ndarray[Any, Any]
) -> None:
    # acc = w * x over one block: the first fold into fresh accumulators needs no zeroing.
    if x.dtype == acc.dtype:
        np.multiply(x, w, out=acc)
        return
    np.copyto(acc, x, casting="unsafe")
    if not (w == 1 and acc.dtype.kind == "f"):
        np.multiply(acc, w, out=acc)


def fold_into(
    acc: np.ndarray[Any, Any],
    x: np.ndarray[Any, Any],
    weight: float,
    scratch: np.ndarray[Any, Any],
    *,
    assign: bool = False,
) -> bool:
    """``acc += weight * x`` (``acc = weight * x`` with ``assign``) if ``x`` is all finite.

    Returns False if ``x`` holds NaN or infinity: ``acc`` is then kept, up to the rounding
    of one addition and subtraction (with ``assign``, its content is undefined).

    ``acc`` and ``x`` are flat with equal sizes; ``scratch`` is a flat buffer of ``acc``'s
    dtype of at least one block (:func:`new_scratch`). The product is formed in the
    accumulator's precision, so float32 updates times integer weights are exact in a float64
    accumulator. The work goes block by block: each block of ``x`` is checked for NaN and
    infinity while it sits in cache and then folded, so memory sees one read of ``x`` and
    one read and write of ``acc``. When a block turns out non-finite, the blocks already
    folded are subtracted again (the update is rejected either way).
    """
    n = acc.size
    if n == 0:
        return True
    w = acc.dtype.type(weight)
    check = x.dtype.kind in "fc"
    step = min(n, scratch.size)
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = x[start:stop]
        if check and not _block_finite(block):
            if not assign:
                for done in range(0, start, step):
                    end = min(done + step, start)
                    _axpy_block(acc[done:end], x[done:end], -w, scratch[: end - done])
            return False
        if assign:
            _assign_block(acc[start:stop], block, w, scratch[: stop - start])
        else:
            _axpy_block(acc[start:stop], block, w, scratch[: stop - start])
    return True


def new_scratch(dtype: np.dtype[Any], size: int) -> np.ndarray[Any, Any]:
    """A scratch buffer for :func:`fold_into` over arrays of ``size`` elements."""
    return np.empty(min(size, max(_BLOCK_BYTES // dtype.itemsize, 1)), dtype=dtype)


def cast_mean(
    total: np.ndarray[Any, Any], weight_sum: float, dtype: np.dtype[Any]
) -> np.ndarray[Any, Any]:
    """``total / weight_sum`` cast back to ``dtype`` (integers rounded, bools thresholded)."""
    if dtype.kind == "f" and total.dtype.kind == "f":
        # Divided in total's precision and rounded once to dtype, as ``astype`` would, without
        # a full-size intermediate of total's precision.
        out = np.empty(total.shape, dtype=dtype)
        flat_total, flat_out = total.reshape(-1), out.reshape(-1)

        def divide(start: int, stop: int) -> None:
            np.divide(
                flat_total[start:stop], weight_sum, out=flat_out[start:stop], casting="unsafe"
            )

        split_work(flat_out.size, total.itemsize, divide)
        return out
    mean = total / weight_sum
    if dtype.kind == "b":
        return mean >= 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(mean), info.min, info.max).astype(dtype)
    if dtype.kind == "f":
        return mean.real.astype(dtype) if mean.dtype.kind == "c" else mean.astype(dtype)
    return mean.astype(dtype)
