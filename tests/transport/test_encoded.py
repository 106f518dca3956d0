from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given

from corolla.core import CodecError, decode_array, encode_array
from corolla.transport import EncodeCache, EncodedArray, check_sha256, sha256_of

from ..core.strategies import arrays, non_contiguous_arrays


@given(arrays())
def test_encoded_bytes_are_the_codec_bytes(array: np.ndarray[Any, Any]) -> None:
    encoded = EncodedArray.from_array(array)

    expected = encode_array(array)
    assert encoded.tobytes() == expected
    assert encoded.size == len(expected)
    assert encoded.sha256 == hashlib.sha256(expected).hexdigest()
    assert encoded.dtype == array.dtype.newbyteorder("<").str
    assert encoded.shape == array.shape


@given(non_contiguous_arrays())
def test_non_contiguous_arrays_encode_like_the_codec(array: np.ndarray[Any, Any]) -> None:
    assert EncodedArray.from_array(array).tobytes() == encode_array(array)


def test_contiguous_little_endian_array_is_not_copied() -> None:
    array = np.arange(1000, dtype="<f4").reshape(10, 100)

    encoded = EncodedArray.from_array(array)

    assert np.shares_memory(np.frombuffer(encoded.data, np.uint8), array)
    assert encoded.data.readonly


def test_round_trip_through_decode() -> None:
    array = np.arange(6, dtype=">i8").reshape(2, 3)

    decoded = decode_array(EncodedArray.from_array(array).tobytes())

    assert np.array_equal(decoded, array)


def test_unsupported_dtype_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        EncodedArray.from_array(np.array(["a"]))


def test_cache_encodes_each_object_once() -> None:
    a, b = np.ones(3), np.ones(3)
    cache = EncodeCache()

    first, again, other = cache.encode(a), cache.encode(a), cache.encode(b)

    assert first is again
    assert other is not first and other.sha256 == first.sha256
    assert len(cache) == 2


def test_sha256_helpers() -> None:
    digest = sha256_of(b"ab", memoryview(b"c"))

    assert digest == hashlib.sha256(b"abc").hexdigest()
    assert check_sha256(digest) == digest
    for bad in ["", digest.upper(), digest[:-1], digest + "0", 3]:
        with pytest.raises(CodecError):
            check_sha256(bad)  # type: ignore[arg-type]
