"""Pure numerical kernels of aggregation: arrays in, arrays out, no messages, no I/O."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "accumulator_dtype",
    "all_finite",
    "axpy_into",
    "cast_mean",
    "new_scratch",
]

# Elements processed per step: a float64 scratch block of 1 MiB stays in a core's L2 cache,
# and blocks this long make the per-call cost of NumPy negligible.
_BLOCK = 1 << 17


def accumulator_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype sums of ``dtype`` values are accumulated in (float64, or complex128)."""
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


def axpy_into(
    acc: np.ndarray[Any, Any], x: np.ndarray[Any, Any], weight: float, scratch: np.ndarray[Any, Any]
) -> None:
    """``acc += weight * x``, computed in ``acc``'s precision, block by block.

    ``acc`` and ``x`` are flat with equal sizes; ``scratch`` is a flat buffer of ``acc``'s
    dtype with at least ``min(acc.size, 131072)`` elements. The product is formed in the
    accumulator's precision, so float32 updates times integer weights are exact in float64.
    """
    n = acc.size
    if n == 0:
        return
    w = acc.dtype.type(weight)
    # Each block of x is cast into the cache-resident scratch, scaled there and added, so
    # memory sees one read of x and one read and write of acc. Casting inside np.multiply
    # goes through NumPy's small internal buffers, which is markedly slower. Multiplying a
    # real number by 1 is exact, so that step is skipped for unit weights.
    scale = not (w == 1 and acc.dtype.kind == "f")
    step = min(n, scratch.size)
    for start in range(0, n, step):
        stop = min(start + step, n)
        tmp = scratch[: stop - start]
        np.copyto(tmp, x[start:stop], casting="unsafe")
        if scale:
            np.multiply(tmp, w, out=tmp)
        np.add(acc[start:stop], tmp, out=acc[start:stop])


def new_scratch(dtype: np.dtype[Any], size: int) -> np.ndarray[Any, Any]:
    """A scratch buffer for :func:`axpy_into` over arrays of ``size`` elements."""
    return np.empty(min(size, _BLOCK), dtype=dtype)


def cast_mean(
    total: np.ndarray[Any, Any], weight_sum: float, dtype: np.dtype[Any]
) -> np.ndarray[Any, Any]:
    """``total / weight_sum`` cast back to ``dtype`` (integers rounded, bools thresholded)."""
    if dtype.kind == "f" and total.dtype.kind == "f":
        # Divided in total's precision and rounded once to dtype, as ``astype`` would, without
        # a full-size intermediate of total's precision.
        out = np.empty(total.shape, dtype=dtype)
        np.divide(total, weight_sum, out=out, casting="unsafe")
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
