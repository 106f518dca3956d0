"""One array: a Flower ``Array`` <-> the NumPy array Corolla keeps in an ``ArrayRecord``.

A Flower ``Array`` of stype ``"numpy.ndarray"`` holds its array as the bytes of a ``.npy``
file. Reading one parses the header and views the rest of the bytes, so the NumPy array
shares memory with the Flower ``Array`` (read-only, as Flower's ``bytes`` are). Writing one
needs ``bytes`` (Flower checks the type), so the elements are copied exactly once: into a
buffer sized for header and elements, which then becomes the ``bytes`` object itself.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import numpy.lib.format as npy
from flwr.app import Array

from corolla.core import RecordError

__all__ = ["NUMPY_STYPE", "array_from_flower", "array_to_flower"]

#: The stype of a Flower ``Array`` holding ``.npy`` bytes (``flwr.common.constant.SType``).
NUMPY_STYPE = "numpy.ndarray"

# numpy refuses headers longer than this when reading .npy files (its own safety limit), so
# no valid header needs more of the bytes than the magic, the length and this.
_MAX_HEADER = 16 + 10_000


def array_from_flower(array: Array) -> np.ndarray[Any, Any]:
    """The NumPy array a Flower ``Array`` holds, viewing its bytes where it can.

    An ``Array`` of stype ``"numpy.ndarray"`` is read without copying its elements: the
    result is a read-only view of ``array.data``. Other stypes are converted by Flower's
    own ``Array.numpy()``, if it supports them.

    Raises
    ------
    RecordError
        If the stype is one Flower cannot turn into a NumPy array, or the bytes are not a
        ``.npy`` file of a numeric or bool array (object arrays are never unpickled).
    """
    if array.stype != NUMPY_STYPE:
        return _through_flower(array)
    data = array.data
    try:
        header = io.BytesIO(bytes(memoryview(data)[:_MAX_HEADER]))
        version = npy.read_magic(header)
        if version == (1, 0):
            shape, fortran_order, dtype = npy.read_array_header_1_0(header)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy.read_array_header_2_0(header)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    except ValueError as exc:
        raise RecordError(f"Flower Array is not a readable .npy array: {exc}") from exc
    if dtype.hasobject:
        raise RecordError(f"Flower Array holds Python objects (dtype {dtype}), not numbers")
    offset = header.tell()
    count = math.prod(shape)
    expected = offset + count * dtype.itemsize
    if len(data) != expected:
        raise RecordError(
            f"Flower Array of dtype {dtype} and shape {shape} needs {expected} bytes, "
            f"it has {len(data)}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran_order else "C")


def _through_flower(array: Array) -> np.ndarray[Any, Any]:
    try:
        converted = array.numpy()
    except (TypeError, ValueError) as exc:
        raise RecordError(
            f"Flower Array has stype {array.stype!r}, which Flower cannot turn into a "
            f"NumPy array ({exc}); only {NUMPY_STYPE!r} arrays can be converted"
        ) from exc
    if not isinstance(converted, np.ndarray):
        raise RecordError(
            f"Flower Array of stype {array.stype!r} gave a {type(converted).__name__}, "
            "not a NumPy array"
        )
    return converted


def array_to_flower(array: np.ndarray[Any, Any]) -> Array:
    """A Flower ``Array`` of stype ``"numpy.ndarray"`` holding ``array``.

    The elements are copied once, whatever the array's layout: a non-contiguous array is
    gathered straight into the ``.npy`` bytes. Byte order is kept.

    Raises
    ------
    RecordError
        If ``array`` holds Python objects.
    """
    if array.dtype.hasobject:
        raise RecordError(f"an array of dtype {array.dtype} cannot be sent to Flower")
    header = io.BytesIO()
    npy.write_array_header_1_0(
        header,
        {"descr": npy.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape},
    )
    return Array(
        dtype=str(array.dtype),
        shape=tuple(int(n) for n in array.shape),
        stype=NUMPY_STYPE,
        data=_join(header.getbuffer(), array),
    )


def _join(header: memoryview, array: np.ndarray[Any, Any]) -> bytes:
    """``header`` followed by ``array``'s elements in C order, as one ``bytes`` object.

    A ``BytesIO`` grown to the final size lends its buffer for writing (``getbuffer``) and
    then hands that very buffer over as ``bytes`` (``getvalue`` does not copy an unshared,
    fully written buffer), so the elements are copied once, by ``np.copyto``.
    """
    total = len(header) + array.nbytes
    out = io.BytesIO()
    out.seek(total - 1)
    out.write(b"\0")
    with out.getbuffer() as buffer:
        buffer[: len(header)] = header
        if array.size:
            target = np.frombuffer(buffer, dtype=array.dtype, offset=len(header))
            np.copyto(target.reshape(array.shape), array, casting="no")
            del target
    return out.getvalue()
