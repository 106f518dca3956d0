"""Push streams stored chunk by chunk, verified by hash; downloads through a cache."""

from __future__ import annotations

import numpy as np
import pytest

from corolla.core import CodecError
from corolla.runtime._payloads import ArrayCache, serve_payload, store_pushed
from corolla.state import MemoryBlobStore
from corolla.transport import EncodedArray, chunk_messages


def _encoded(n: int) -> EncodedArray:
    return EncodedArray.from_array(np.arange(n, dtype=np.float64))


def test_several_payloads_in_one_stream_are_each_stored() -> None:
    blobs = MemoryBlobStore()
    a, b, empty = _encoded(100), _encoded(3), b""
    stream = [
        *chunk_messages(a, chunk_size=64),
        *chunk_messages(b, chunk_size=7),
        *chunk_messages(empty),
    ]

    statuses = store_pushed(blobs, stream)

    assert [s.complete for s in statuses] == [True, True, True]
    assert bytes(blobs.open(a.sha256)) == a.tobytes()
    assert bytes(blobs.open(b.sha256)) == b.tobytes()


@pytest.mark.parametrize("fault", ["truncated", "reordered", "corrupted", "next-too-early"])
def test_a_malformed_stream_stores_nothing(fault: str) -> None:
    blobs = MemoryBlobStore()
    a, b = _encoded(100), _encoded(3)
    chunks = list(chunk_messages(a, chunk_size=64))
    if fault == "truncated":
        chunks = chunks[:-1]
    elif fault == "reordered":
        chunks.reverse()
    elif fault == "corrupted":
        chunks[0].data = bytes(len(chunks[0].data))
    else:
        chunks = chunks[:1] + list(chunk_messages(b))

    with pytest.raises(CodecError):
        store_pushed(blobs, chunks)

    assert not blobs.exists(a.sha256)


def test_the_cache_downloads_what_it_lacks_once() -> None:
    source = MemoryBlobStore()
    encoded = _encoded(10)
    source.put(encoded.tobytes())
    calls = []

    def pull(request, metadata=None):  # type: ignore[no-untyped-def]
        calls.append(request.sha256)
        return serve_payload(source, request.sha256, request.offset)

    cache = ArrayCache(MemoryBlobStore(), pull)
    cache.fetch({encoded.sha256: encoded.size})
    cache.fetch({encoded.sha256: encoded.size})

    np.testing.assert_array_equal(cache(encoded.sha256), np.arange(10.0))
    assert calls == [encoded.sha256]
    with pytest.raises(KeyError):
        cache("f" * 64)
