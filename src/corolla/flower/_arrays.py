"""One array: a Flower ``Array`` <-> the NumPy array Corolla keeps in an ``ArrayRecord``.

A Flower ``Array`` of stype ``"numpy.ndarray"`` holds its array as the bytes of a ``.npy``
file. Reading one parses the header and views the rest of the bytes, so the NumPy array
shares memory with the Flower ``Array`` (read-only, as Flower's ``bytes`` are). A header
as NumPy writes it is read by a pattern; any other goes through NumPy's own parser.

An array going to Flower becomes an ``Array`` that holds Corolla's (read-only) array and
writes the ``.npy`` bytes only when something reads ``data``: its ``numpy()`` hands out a
fresh, writable copy of the array, as Flower's (which parses the bytes) does, and turning
it back into a Corolla array gives the very array it holds. A round trip through a Flower
app that only reads its arrays therefore never serializes them. When the bytes are
written, the elements are copied exactly once, into a buffer sized for header and
elements that then becomes the ``bytes`` object itself.
"""

from __future__ import annotations

import functools
import io
import math
import re
import threading
from typing import Any

import numpy as np
import numpy.lib.format as npy
from flwr.app import Array, ArrayRecord

from corolla.core import RecordError

__all__ = ["NUMPY_STYPE", "array_from_flower", "array_to_flower", "hold_arrays_flower_records_take"]

#: The stype of a Flower ``Array`` holding ``.npy`` bytes (``flwr.common.constant.SType``).
NUMPY_STYPE = "numpy.ndarray"

# numpy refuses headers longer than this when reading .npy files (its own safety limit), so
# no valid header needs more of the bytes than the magic, the length and this.
_MAX_HEADER = 16 + 10_000

_MAGIC = b"\x93NUMPY"

# The header dict exactly as ``numpy.lib.format`` writes it for a plain dtype, padded with
# spaces to a multiple of 64 bytes and ended with a newline.
_PLAIN_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[a-zA-Z][a-zA-Z0-9]*)', 'fortran_order': (True|False), "
    rb"'shape': \(((?:\d+, )*\d+,?|)\), \} *\n"
)


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
    if isinstance(array, _HeldArray):
        held = array.held
        if held is not None:
            return held
    data = array.data
    try:
        shape, fortran_order, dtype, offset = _read_header(data)
    except ValueError as exc:
        raise RecordError(f"Flower Array is not a readable .npy array: {exc}") from exc
    if dtype.hasobject:
        raise RecordError(f"Flower Array holds Python objects (dtype {dtype}), not numbers")
    count = math.prod(shape)
    expected = offset + count * dtype.itemsize
    if len(data) != expected:
        raise RecordError(
            f"Flower Array of dtype {dtype} and shape {shape} needs {expected} bytes, "
            f"it has {len(data)}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran_order else "C")


def _read_header(data: bytes) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """Shape, Fortran order, dtype and the elements' offset of ``.npy`` bytes.

    Raises
    ------
    ValueError
        If the bytes do not start with a valid ``.npy`` header.
    """
    view = memoryview(data)
    if bytes(view[:6]) == _MAGIC and len(view) >= 10 and view[6] == 1:
        end = 10 + int.from_bytes(view[8:10], "little")
        match = _PLAIN_HEADER.fullmatch(bytes(view[10:end]))
        if match is not None and len(view) >= end:
            descr, fortran, dims = match.groups()
            shape = tuple(int(n) for n in dims.split(b",") if n.strip())
            return shape, fortran == b"True", _dtype(descr.decode("ascii")), end
    header = io.BytesIO(bytes(view[:_MAX_HEADER]))
    version = npy.read_magic(header)
    if version == (1, 0):
        shape, fortran_order, dtype = npy.read_array_header_1_0(header)
    elif version == (2, 0):
        shape, fortran_order, dtype = npy.read_array_header_2_0(header)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    return shape, fortran_order, dtype, header.tell()


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: np.dtype[Any]) -> str:
    # ``str(dtype)`` takes NumPy several microseconds, more than the rest of a conversion.
    return str(dtype)


@functools.lru_cache(maxsize=64)
def _dtype(descr: str) -> np.dtype[Any]:
    try:
        return np.dtype(descr)
    except TypeError as exc:
        raise ValueError(f"descr {descr!r} is not a NumPy dtype") from exc


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

    The ``Array`` keeps ``array`` and writes its ``.npy`` bytes when ``data`` is first
    read, copying the elements once, whatever the array's layout (a non-contiguous array
    is gathered straight into the bytes). Byte order is kept. ``array`` must not change
    while the ``Array`` lives: Corolla's records hold read-only arrays.

    Raises
    ------
    RecordError
        If ``array`` holds Python objects.
    """
    if array.dtype.hasobject:
        raise RecordError(f"an array of dtype {array.dtype} cannot be sent to Flower")
    return _HeldArray(array)


class _HeldArray(Array):
    """A Flower ``Array`` over a NumPy array, its ``.npy`` bytes written when first read.

    Flower reads an ``Array``'s fields as attributes and compares arrays field by field;
    this one gives the same answers as an ``Array`` built from its bytes. Setting any
    field writes the bytes first and lets go of the array.
    """

    def __init__(self, array: np.ndarray[Any, Any]) -> None:
        # Flower's __setattr__ tracks changes for its wire format; these are first values.
        fields = self.__dict__
        fields["dtype"] = _dtype_name(array.dtype)
        fields["shape"] = tuple(int(n) for n in array.shape)
        fields["stype"] = NUMPY_STYPE
        fields["_held"] = array

    @property
    def held(self) -> np.ndarray[Any, Any] | None:
        """The NumPy array, until a field is set."""
        held: np.ndarray[Any, Any] | None = self.__dict__.get("_held")
        return held

    @property
    def data(self) -> bytes:
        fields = self.__dict__
        data: bytes | None = fields.get("_npy")
        if data is None:
            data = fields["_npy"] = _npy_bytes(fields["_held"])
        return data

    @data.setter
    def data(self, value: bytes) -> None:
        self.__dict__["_npy"] = value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("dtype", "shape", "stype", "data") and "_held" in self.__dict__:
            if name != "data":
                self.data  # noqa: B018 (the bytes, before the array goes)
            del self.__dict__["_held"]
        super().__setattr__(name, value)

    def numpy(self) -> np.ndarray[Any, Any]:
        held = self.held
        if held is None:
            converted: np.ndarray[Any, Any] = super().numpy()
            return converted
        copied: np.ndarray[Any, Any] = held.copy()
        return copied

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Array):
            return NotImplemented
        return (self.dtype, self.shape, self.stype, self.data) == (
            other.dtype,
            other.shape,
            other.stype,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]

    def deflate(self) -> bytes:
        # Flower's wire format names an object's class; this one travels as an Array.
        return Array(self.dtype, self.shape, self.stype, self.data).deflate()


def _npy_bytes(array: np.ndarray[Any, Any]) -> bytes:
    """The ``.npy`` file of ``array``, in C order, as NumPy's ``save`` writes it."""
    header = io.BytesIO()
    npy.write_array_header_1_0(
        header,
        {"descr": npy.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape},
    )
    return _join(header.getbuffer(), array)


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


def _holdable(array: Any) -> bool:
    """Whether ``array``'s ``.npy`` bytes, as ``np.save`` writes them, are those of
    :func:`_npy_bytes`: a plain NumPy array of numbers (no structured dtype) that ``np.save``
    writes in C order (all but arrays laid out in Fortran order only)."""
    return (
        type(array) is np.ndarray
        and not array.dtype.hasobject
        and array.dtype.names is None
        and not (array.flags.f_contiguous and not array.flags.c_contiguous)
    )


def _snapshot(array: np.ndarray[Any, Any]) -> _HeldArray:
    """A Flower ``Array`` of what ``array`` holds now: a read-only C-order copy, whose
    ``.npy`` bytes are written when read."""
    copied = np.array(array, order="C", copy=True)
    copied.flags.writeable = False
    return _HeldArray(copied)


#: Flower's own ``ArrayRecord.from_numpy_ndarrays``, once replaced.
_FLOWER_FROM_NDARRAYS: Any = None
_INSTALLING = threading.Lock()


def hold_arrays_flower_records_take() -> None:
    """Let Flower's ``ArrayRecord(ndarrays)`` (``ArrayRecord.from_numpy_ndarrays``) in this
    process keep a copy of each array and write its ``.npy`` bytes only when they are read,
    rather than ``np.save`` each array at once.

    A ClientApp that builds its reply from NumPy arrays then hands Corolla arrays it takes
    without parsing any bytes. What Flower code can observe is unchanged: each ``Array``'s
    ``dtype``, ``shape``, ``stype`` and ``data`` (byte for byte what ``np.save`` writes),
    ``numpy()`` (a fresh writable copy), equality, and that later changes to the input
    arrays do not reach the record. Arrays whose bytes would differ (Fortran order,
    structured or object dtypes, subclasses), and every array of ``keep_input=False``,
    go through Flower's own code. Called when Corolla runs a Flower app; idempotent.
    """
    global _FLOWER_FROM_NDARRAYS
    with _INSTALLING:
        if _FLOWER_FROM_NDARRAYS is None:
            _FLOWER_FROM_NDARRAYS = ArrayRecord.__dict__["from_numpy_ndarrays"].__func__
            ArrayRecord.from_numpy_ndarrays = classmethod(_from_numpy_ndarrays)  # type: ignore[method-assign, assignment]


def _from_numpy_ndarrays(
    cls: type[ArrayRecord], ndarrays: list[Any], *, keep_input: bool = True
) -> ArrayRecord:
    """``ArrayRecord.from_numpy_ndarrays`` once :func:`hold_arrays_flower_records_take`
    ran: held copies where the bytes would be the same, Flower's own code elsewhere."""
    if cls is not ArrayRecord or not keep_input:
        return _FLOWER_FROM_NDARRAYS(cls, ndarrays, keep_input=keep_input)  # type: ignore[no-any-return]
    record = ArrayRecord()
    for index, array in enumerate(ndarrays):
        held = _holdable(array)
        record[str(index)] = _snapshot(array) if held else Array.from_numpy_ndarray(array)
    return record
