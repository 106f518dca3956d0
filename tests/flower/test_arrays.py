"""A Flower ``Array`` <-> a NumPy array: views one way, exactly one copy the other."""

from __future__ import annotations

import io
import tracemalloc
from typing import Any

import numpy as np
import numpy.lib.format as npy
import pytest
from flwr import app as flwr_app
from hypothesis import given
from hypothesis import strategies as st

from corolla.core import RecordError
from corolla.flower import NUMPY_STYPE, array_from_flower, array_to_flower
from corolla.flower._arrays import hold_arrays_flower_records_take

from ..core.strategies import arrays, non_contiguous_arrays


def _same_array(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _data_view(array: flwr_app.Array) -> np.ndarray[Any, Any]:
    return np.frombuffer(array.data, dtype=np.uint8)


@given(arrays())
def test_an_array_survives_a_trip_through_flower(array):
    # Act
    back = array_from_flower(array_to_flower(array))

    # Assert: same dtype (byte order included), shape and bits, NaN payloads too
    assert _same_array(back, array)


@given(non_contiguous_arrays())
def test_a_non_contiguous_array_survives_a_trip_through_flower(array):
    # Act
    back = array_from_flower(array_to_flower(array))

    # Assert
    assert _same_array(back, array.copy(order="C"))


@given(arrays())
def test_flower_reads_what_corolla_writes(array):
    # Act
    converted = array_to_flower(array)

    # Assert
    assert converted.stype == NUMPY_STYPE
    assert converted.shape == array.shape
    assert converted.dtype == str(array.dtype)
    assert _same_array(converted.numpy(), array)


@given(arrays())
def test_corolla_writes_the_bytes_flower_writes_for_a_c_ordered_array(array):
    # Act
    ours = array_to_flower(array)

    # Assert
    assert ours == flwr_app.Array(array)


@given(arrays())
def test_corolla_reads_what_flower_writes(array):
    # Act
    back = array_from_flower(flwr_app.Array(array))

    # Assert
    assert _same_array(back, array)


@pytest.mark.parametrize(
    "array",
    [
        np.array(3.5),
        np.zeros((0,), dtype=np.int16),
        np.zeros((2, 0, 3), dtype=np.complex64),
        np.arange(24, dtype=">i4").reshape(2, 3, 4)[:, ::2, ::-1],
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    ],
    ids=["0-d", "empty", "empty-3d", "strided-big-endian", "fortran"],
)
def test_edge_shapes_and_layouts_survive_a_trip_through_flower(array):
    # Act
    back = array_from_flower(array_to_flower(array))

    # Assert
    assert _same_array(back, array.copy(order="C"))


def test_an_array_read_from_flower_views_its_bytes():
    # Arrange
    flower = flwr_app.Array(np.arange(1000, dtype=np.float32))

    # Act
    array = array_from_flower(flower)

    # Assert
    assert np.shares_memory(array, _data_view(flower))
    assert not array.flags.writeable


def test_a_fortran_ordered_npy_is_read_without_copying():
    # Arrange: Flower writes an F-ordered array as such
    flower = flwr_app.Array(np.asfortranarray(np.arange(12.0).reshape(3, 4)))

    # Act
    array = array_from_flower(flower)

    # Assert
    assert np.shares_memory(array, _data_view(flower))
    assert np.array_equal(array, np.arange(12.0).reshape(3, 4))


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_an_array_is_copied_exactly_once_into_flower(layout):
    # Arrange
    base = np.arange(2_000_000, dtype=np.float64)
    array = base if layout == "contiguous" else base.reshape(1000, 2000)[:, ::2]
    tracemalloc.start()
    try:
        # Act
        data = array_to_flower(array).data
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Assert: the output's bytes, plus a little (its header and bookkeeping), no second copy
    assert len(data) > array.nbytes
    assert peak < array.nbytes + 64 * 1024


def test_an_array_sent_to_flower_writes_no_bytes_until_they_are_read():
    # Arrange
    array = np.arange(2_000_000, dtype=np.float64)
    tracemalloc.start()
    try:
        # Act
        converted = array_to_flower(array)
        back = array_from_flower(converted)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Assert: the way back hands over the very array, and nothing was copied
    assert back is array
    assert peak < 64 * 1024


@given(arrays())
def test_numpy_of_an_array_sent_to_flower_is_a_fresh_writable_copy(array):
    # Arrange
    converted = array_to_flower(array)

    # Act
    first = converted.numpy()
    first[...] = 0
    second = converted.numpy()

    # Assert: as Flower's own numpy() (which parses the bytes), each call is new
    assert first.flags.writeable
    assert not np.shares_memory(first, array)
    assert _same_array(second, array.copy(order="C"))


@given(arrays())
def test_an_array_sent_to_flower_equals_flowers_own_both_ways(array):
    # Arrange
    ours = array_to_flower(array)
    theirs = flwr_app.Array(array.copy(order="C"))

    # Act / Assert
    assert ours == theirs
    assert theirs == ours


def test_setting_a_field_of_an_array_sent_to_flower_lets_go_of_the_array():
    # Arrange
    converted = array_to_flower(np.arange(6, dtype=np.int32))
    replacement = flwr_app.Array(np.arange(3, dtype=np.int64))

    # Act
    converted.dtype = replacement.dtype
    converted.shape = replacement.shape
    converted.data = replacement.data

    # Assert
    assert _same_array(converted.numpy(), np.arange(3, dtype=np.int64))
    assert _same_array(array_from_flower(converted), np.arange(3, dtype=np.int64))


def test_an_array_sent_to_flower_deflates_as_a_flower_array():
    # Arrange
    array = np.arange(10, dtype=np.float32)
    converted = array_to_flower(array)

    # Act
    deflated = converted.deflate()

    # Assert: Flower's wire format, which names the class, sees a plain Array
    assert deflated == flwr_app.Array(array).deflate()
    assert deflated.startswith(b"Array")


@given(arrays())
def test_headers_are_read_as_numpy_reads_them(array):
    # Arrange: Flower's bytes, in NumPy's own format (the fast path), and a version 2.0
    # header (NumPy's parser)
    flower = flwr_app.Array(array)
    buffer = io.BytesIO()
    npy.write_array(buffer, array, version=(2, 0))
    version_2 = flwr_app.Array(
        dtype=flower.dtype, shape=flower.shape, stype=NUMPY_STYPE, data=buffer.getvalue()
    )

    # Act / Assert
    for converted in (flower, version_2):
        assert _same_array(array_from_flower(converted), converted.numpy())


def test_an_array_of_a_stype_flower_cannot_read_is_refused_naming_the_stype():
    # Arrange
    flower = flwr_app.Array(dtype="float32", shape=(2,), stype="torch.Tensor", data=b"\0" * 8)

    # Act / Assert
    with pytest.raises(RecordError, match=r"stype 'torch.Tensor'"):
        array_from_flower(flower)


def test_truncated_npy_bytes_are_refused_saying_how_many_bytes_are_needed():
    # Arrange
    whole = flwr_app.Array(np.zeros(10, dtype=np.float64))
    flower = flwr_app.Array(
        dtype=whole.dtype, shape=whole.shape, stype=NUMPY_STYPE, data=whole.data[:-8]
    )

    # Act / Assert
    with pytest.raises(RecordError, match=r"needs \d+ bytes, it has \d+"):
        array_from_flower(flower)


def test_bytes_that_are_not_npy_are_refused():
    # Arrange
    flower = flwr_app.Array(dtype="float32", shape=(1,), stype=NUMPY_STYPE, data=b"nonsense")

    # Act / Assert
    with pytest.raises(RecordError, match=r"not a readable \.npy array"):
        array_from_flower(flower)


def test_an_npy_of_python_objects_is_refused_without_unpickling():
    # Arrange: a header claiming object dtype, followed by bytes that must never be loaded
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    flower = flwr_app.Array(
        dtype="object", shape=(1,), stype=NUMPY_STYPE, data=header.getvalue() + b"\x80" * 8
    )

    # Act / Assert
    with pytest.raises(RecordError, match="Python objects"):
        array_from_flower(flower)


def test_an_object_array_cannot_go_to_flower():
    # Act / Assert
    with pytest.raises(RecordError, match="dtype object"):
        array_to_flower(np.array([object()]))


def _saved(array: np.ndarray[Any, Any]) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


@given(st.lists(st.one_of(arrays(), non_contiguous_arrays()), min_size=1, max_size=4))
def test_an_array_record_flower_builds_under_corolla_is_the_one_flower_builds(ndarrays):
    # Arrange: what Corolla's adapters install when they run a Flower app
    hold_arrays_flower_records_take()
    inputs = [a.copy(order="K") for a in ndarrays]  # C, or Fortran-ordered ones
    originals = [a.copy(order="K") for a in ndarrays]

    # Act
    record = flwr_app.ArrayRecord(inputs)
    for array in inputs:  # changed after the record was built (a view of each copy)
        if array.size:
            array.reshape(-1, order="A").view(np.uint8)[0] ^= 0xFF

    # Assert: every field as np.save and Flower's own code make it, the input's changes
    # left out
    assert list(record) == [str(i) for i in range(len(ndarrays))]
    for name, original in zip(record, originals, strict=True):
        held = record[name]
        assert (held.dtype, held.shape, held.stype) == (
            str(original.dtype),
            original.shape,
            NUMPY_STYPE,
        )
        assert held.data == _saved(original)
        assert held == flwr_app.Array.from_numpy_ndarray(original)
        assert _same_array(held.numpy(), np.load(io.BytesIO(_saved(original))))


def test_flower_record_arrays_are_held_without_writing_bytes_and_handed_to_corolla_as_they_are():
    # Arrange
    hold_arrays_flower_records_take()
    update = np.arange(6, dtype=np.float32).reshape(2, 3)

    # Act
    record = flwr_app.ArrayRecord([update])
    back = array_from_flower(record["0"])

    # Assert: no .npy bytes were written, and Corolla gets the held (read-only) copy
    assert "_npy" not in record["0"].__dict__
    assert _same_array(back, update)
    assert not back.flags.writeable
    assert not np.shares_memory(back, update)


def test_arrays_flower_records_would_write_otherwise_and_keep_input_false_go_through_flower():
    # Arrange
    hold_arrays_flower_records_take()
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    dropped = [np.arange(3.0)]

    # Act
    record = flwr_app.ArrayRecord([fortran])
    given_up = flwr_app.ArrayRecord(dropped, keep_input=False)

    # Assert: Flower's own Arrays, and Flower's clearing of the input list
    assert type(record["0"]) is flwr_app.Array
    assert record["0"].data == _saved(fortran)
    assert type(given_up["0"]) is flwr_app.Array
    assert dropped == []
