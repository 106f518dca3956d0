"""Casting float64 results of the strategy kernels back to an array's dtype."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_dtype"]


def to_dtype(value: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """``value`` (float64 or complex128) as a new array of ``dtype``: integers rounded to
    the nearest and clipped to the dtype's range, bools thresholded at 0.5, the real part
    kept for real dtypes."""
    if dtype.kind == "b":
        return np.asarray(value.real >= 0.5)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        rounded: np.ndarray[Any, Any] = np.clip(np.rint(value.real), info.min, info.max)
        return rounded.astype(dtype)
    if dtype.kind == "f":
        return np.asarray(value.real if value.dtype.kind == "c" else value).astype(dtype)
    return np.asarray(value).astype(dtype)
