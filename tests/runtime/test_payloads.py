"""Push streams stored chunk by chunk, verified by hash; downloads through a cache, or
reads in place from the link's own directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corolla.core import CodecError
from corolla.runtime._payloads import ArrayCache
from corolla.runtime.link._payloads import serve_payload, store_pushed
from corolla.state import DirectoryBlobStore, MemoryBlobStore
from corolla.transport import EncodedArray, chunk_messages, parse_chunk


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
        return map(parse_chunk, serve_payload(source, request.sha256, request.offset))

    cache = ArrayCache(MemoryBlobStore(), pull)
    cache.fetch({encoded.sha256: encoded.size})
    cache.fetch({encoded.sha256: encoded.size})

    np.testing.assert_array_equal(cache(encoded.sha256), np.arange(10.0))
    assert calls == [encoded.sha256]
    with pytest.raises(KeyError):
        cache("f" * 64)


def _pulling_from(source: MemoryBlobStore, calls: list[str]):  # type: ignore[no-untyped-def]
    def pull(request, metadata=None):  # type: ignore[no-untyped-def]
        calls.append(request.sha256)
        return map(parse_chunk, serve_payload(source, request.sha256, request.offset))

    return pull


def test_a_server_app_reads_the_link_s_blobs_in_place_and_downloads_the_others(
    tmp_path: Path,
) -> None:
    # Arrange: the link's directory holds one payload; the other is only served.
    link = DirectoryBlobStore(tmp_path / "blobs")
    source = MemoryBlobStore()
    there, elsewhere = _encoded(10), _encoded(20)
    link.put(there.tobytes())
    source.put(elsewhere.tobytes())
    calls: list[str] = []
    cache = ArrayCache(MemoryBlobStore(), _pulling_from(source, calls), local=link)

    # Act
    fetched = cache.fetch({there.sha256: there.size, elsewhere.sha256: elsewhere.size})

    # Assert: only the payload not in the directory was downloaded; both decode.
    assert (fetched, calls) == (elsewhere.size, [elsewhere.sha256])
    np.testing.assert_array_equal(cache(there.sha256), np.arange(10.0))
    np.testing.assert_array_equal(cache(elsewhere.sha256), np.arange(20.0))


def test_a_payload_gone_from_the_link_s_directory_is_downloaded_instead(
    tmp_path: Path,
) -> None:
    link = DirectoryBlobStore(tmp_path / "blobs")
    payload = _encoded(10)
    link.put(payload.tobytes())
    source = MemoryBlobStore()
    source.put(payload.tobytes())
    calls: list[str] = []
    cache = ArrayCache(MemoryBlobStore(), _pulling_from(source, calls), local=link)
    cache.fetch({payload.sha256: payload.size})

    link.delete(payload.sha256)  # collected between the fetch and the decode
    array = cache(payload.sha256)

    np.testing.assert_array_equal(array, np.arange(10.0))
    assert calls == [payload.sha256]


def test_a_file_of_another_size_than_the_reply_declares_is_not_read_in_place(
    tmp_path: Path,
) -> None:
    link = DirectoryBlobStore(tmp_path / "blobs")
    payload = _encoded(10)
    (tmp_path / "blobs" / payload.sha256[:2]).mkdir()
    (tmp_path / "blobs" / payload.sha256[:2] / payload.sha256).write_bytes(b"short")
    source = MemoryBlobStore()
    source.put(payload.tobytes())
    calls: list[str] = []
    cache = ArrayCache(MemoryBlobStore(), _pulling_from(source, calls), local=link)

    fetched = cache.fetch({payload.sha256: payload.size})

    assert (fetched, calls) == (payload.size, [payload.sha256])
    np.testing.assert_array_equal(cache(payload.sha256), np.arange(10.0))
