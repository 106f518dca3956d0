"""Hypothesis strategies shared by the core tests: arrays of every wire dtype, and records."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corolla.core import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

#: Every dtype the codec carries, little-endian (as on the wire).
WIRE_DTYPES = [
    np.dtype(s)
    for s in (
        "|b1",
        "|i1",
        "<i2",
        "<i4",
        "<i8",
        "|u1",
        "<u2",
        "<u4",
        "<u8",
        "<f2",
        "<f4",
        "<f8",
        "<c8",
        "<c16",
    )
]

#: The multi-byte ones again, big-endian: the encoder must turn them little-endian.
BIG_ENDIAN_DTYPES = [d.newbyteorder(">") for d in WIRE_DTYPES if d.itemsize > 1]

ALL_DTYPES = WIRE_DTYPES + BIG_ENDIAN_DTYPES

#: Shapes from 0-d to 4-d, zero-length dimensions included.
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)

dtypes = st.sampled_from(ALL_DTYPES)


@st.composite
def arrays(
    draw: st.DrawFn,
    dtype: np.dtype[Any] | st.SearchStrategy[np.dtype[Any]] = dtypes,
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = shapes,
) -> np.ndarray[Any, Any]:
    """Arrays whose elements are arbitrary bit patterns (so every NaN payload, infinity,
    subnormal and negative zero can occur); bools are 0 or 1."""
    dt = draw(dtype) if isinstance(dtype, st.SearchStrategy) else np.dtype(dtype)
    sh = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
    if dt.kind == "b":
        bools: np.ndarray[Any, Any] = draw(hnp.arrays(dt, sh))
        return bools
    size = math.prod(sh) * dt.itemsize
    raw = draw(st.binary(min_size=size, max_size=size))
    array: np.ndarray[Any, Any] = np.frombuffer(raw, dtype=dt).reshape(sh).copy()
    return array


@st.composite
def non_contiguous_arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    """Views that are not C-contiguous: stepped or reversed slices, transposes, F order."""
    base_shape = draw(hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=6))
    base = draw(arrays(shape=base_shape))
    how = draw(st.sampled_from(["slice", "transpose", "slice+transpose", "fortran"]))
    if how == "fortran":
        return np.asfortranarray(base)
    view = base
    if "slice" in how:
        view = view[draw(hnp.basic_indices(view.shape, min_dims=1, allow_ellipsis=True))]
    if "transpose" in how:
        view = view.T
    return view


def le_bytes(array: np.ndarray[Any, Any]) -> bytes:
    """The C-ordered little-endian bytes of ``array``'s elements, computed by swapping
    bytes rather than by casting (so it is independent of numpy's casting code)."""
    little = array.dtype.newbyteorder("<")
    return array.tobytes() if array.dtype == little else array.byteswap().tobytes()


names = st.text(min_size=1, max_size=8)

small_arrays = arrays(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))

array_records = st.dictionaries(names, small_arrays, max_size=4).map(ArrayRecord)

_ints = st.integers(-(2**63), 2**63 - 1)
_floats = st.floats()  # NaN and infinities included

metric_values = st.one_of(
    _ints, _floats, st.lists(_ints, max_size=4), st.lists(_floats, max_size=4)
)

metric_records = st.dictionaries(names, metric_values, max_size=4).map(MetricRecord)

_config_scalars = [_ints, _floats, st.booleans(), st.text(max_size=8), st.binary(max_size=8)]

config_values = st.one_of(*_config_scalars, *(st.lists(s, max_size=4) for s in _config_scalars))

config_records = st.dictionaries(names, config_values, max_size=4).map(ConfigRecord)

records = st.one_of(array_records, metric_records, config_records)

record_dicts = st.dictionaries(names, records, max_size=4).map(RecordDict)
