from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corolla.core import CodecError, ConfigError, decode_array
from corolla.transport import (
    ChunkAssembler,
    EncodedArray,
    FileSink,
    MemorySink,
    chunk_messages,
    iter_chunks,
    read_chunks,
    transfer_pb2,
)

from ..core.strategies import arrays

payloads = st.binary(max_size=200)
chunk_sizes = st.integers(1, 64)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assemble(data: bytes, chunk_size: int, **kwargs: Any) -> memoryview:
    with ChunkAssembler(sha(data), len(data), **kwargs) as assembler:
        for offset, piece in iter_chunks(data, chunk_size):
            assembler.add(offset, piece)
        return assembler.finish()


# Splitting


@given(payloads, chunk_sizes, st.data())
def test_chunks_cover_the_payload_from_offset(
    data: bytes, chunk_size: int, draw: st.DataObject
) -> None:
    offset = draw.draw(st.integers(0, len(data)))

    pieces = list(iter_chunks(data, chunk_size, offset))

    assert b"".join(bytes(p) for _, p in pieces) == data[offset:] or (not data and pieces)
    assert all(0 < len(p) <= chunk_size for _, p in pieces if data)
    assert [o for o, _ in pieces] == [offset + i * chunk_size for i in range(len(pieces))] or (
        not data
    )


@given(st.lists(st.binary(max_size=30), max_size=5), chunk_sizes)
def test_segmented_payload_chunks_end_on_boundaries(segments: list[bytes], size: int) -> None:
    pieces = list(iter_chunks(segments, size))

    whole = b"".join(segments)
    assert b"".join(bytes(p) for _, p in pieces) == whole
    position = 0
    for offset, piece in pieces:
        assert offset == position
        assert offset // size == (offset + max(len(piece), 1) - 1) // size  # within one chunk
        position += len(piece)


def test_chunks_are_views_not_copies() -> None:
    data = bytearray(b"x" * 100)

    pieces = list(iter_chunks(data, 30))
    data[0] = ord("y")

    assert bytes(pieces[0][1][:1]) == b"y"


def test_empty_payload_is_one_empty_chunk() -> None:
    assert [(o, bytes(p)) for o, p in iter_chunks(b"", 10)] == [(0, b"")]


@pytest.mark.parametrize(("size", "offset"), [(0, 0), (-1, 0), (4, -1), (4, 11)])
def test_invalid_split_arguments(size: int, offset: int) -> None:
    with pytest.raises(ConfigError):
        list(iter_chunks(b"0123456789", size, offset))


@given(arrays(), chunk_sizes)
def test_chunk_messages_of_an_array_are_full_but_the_last(array: Any, size: int) -> None:
    encoded = EncodedArray.from_array(array)

    messages = list(chunk_messages(encoded, chunk_size=size))

    assert all(len(m.data) == size for m in messages[:-1])
    assert b"".join(m.data for m in messages) == encoded.tobytes()
    assert {(m.sha256, m.total_size) for m in messages} == {(encoded.sha256, encoded.size)}


def test_chunk_messages_hash_plain_bytes() -> None:
    (message,) = chunk_messages(b"hello", chunk_size=10)

    assert message.sha256 == sha(b"hello")
    assert (message.offset, message.total_size, message.data) == (0, 5, b"hello")


# Assembling


@given(payloads, chunk_sizes)
def test_assemble_in_order(data: bytes, chunk_size: int) -> None:
    assert bytes(assemble(data, chunk_size)) == data


def test_out_of_order_chunk_is_refused() -> None:
    data = b"0123456789"
    assembler = ChunkAssembler(sha(data), len(data))
    assembler.add(0, data[:4])

    with pytest.raises(CodecError, match="starts at byte 8, expected 4"):
        assembler.add(8, data[8:])


def test_overlapping_chunk_is_refused() -> None:
    data = b"0123456789"
    assembler = ChunkAssembler(sha(data), len(data))
    assembler.add(0, data[:4])

    with pytest.raises(CodecError, match="in order"):
        assembler.add(2, data[2:6])


def test_truncated_stream_is_refused() -> None:
    data = b"0123456789"
    assembler = ChunkAssembler(sha(data), len(data))
    assembler.add(0, data[:7])

    with pytest.raises(CodecError, match=r"truncated.*7 of 10"):
        assembler.finish()


def test_chunk_past_declared_size_is_refused() -> None:
    data = b"0123456789"
    assembler = ChunkAssembler(sha(data), 8)

    with pytest.raises(CodecError, match="past its declared size of 8"):
        assembler.add(0, data)


def test_declared_size_above_maximum_is_refused_before_allocating() -> None:
    sizes: list[int] = []

    def sink(size: int) -> MemorySink:
        sizes.append(size)
        return MemorySink(size)

    with pytest.raises(CodecError, match="limit is 1024"):
        ChunkAssembler("0" * 64, 2**40, sink=sink, max_size=1024)
    assert sizes == []


def test_hash_mismatch_is_refused_and_aborts_the_sink(tmp_path: Path) -> None:
    data = b"0123456789"
    path = tmp_path / "blob.part"
    assembler = ChunkAssembler(
        sha(b"something else"), len(data), sink=functools.partial(FileSink, path)
    )
    assembler.add(0, data)

    with pytest.raises(CodecError, match="hash mismatch"):
        assembler.finish()
    assert not path.exists()


def test_empty_chunk_in_non_empty_payload_is_refused() -> None:
    assembler = ChunkAssembler(sha(b"abc"), 3)

    with pytest.raises(CodecError, match="empty chunk"):
        assembler.add(0, b"")


def test_no_chunk_after_finish() -> None:
    assembler = ChunkAssembler(sha(b"abc"), 3)
    assembler.add(0, b"abc")
    assembler.finish()

    with pytest.raises(CodecError, match="finished"):
        assembler.add(3, b"d")


def test_chunk_of_another_payload_is_refused() -> None:
    assembler = ChunkAssembler(sha(b"abc"), 3)
    (other,) = chunk_messages(b"xyz")

    with pytest.raises(CodecError, match="in the stream of payload"):
        assembler.add_chunk(other)


def test_resume_from_offset_after_a_broken_stream() -> None:
    encoded = EncodedArray.from_array(np.arange(1000, dtype=np.float64))
    assembler = ChunkAssembler(encoded.sha256, encoded.size)
    first = chunk_messages(encoded, chunk_size=512)
    for _ in range(3):  # then the connection breaks
        assembler.add_chunk(next(first))

    for chunk in chunk_messages(encoded, chunk_size=512, offset=assembler.offset):
        assembler.add_chunk(chunk)

    assert np.array_equal(decode_array(assembler.finish()), np.arange(1000, dtype=np.float64))


def test_context_manager_aborts_on_error(tmp_path: Path) -> None:
    path = tmp_path / "blob.part"

    with (
        pytest.raises(RuntimeError),
        ChunkAssembler(sha(b"abc"), 3, sink=functools.partial(FileSink, path)) as assembler,
    ):
        assembler.add(0, b"a")
        raise RuntimeError("connection lost")

    assert not path.exists()


# Decoding without copying


def test_decode_views_the_assembled_buffer() -> None:
    array = np.arange(10_000, dtype=np.float32).reshape(100, 100)
    encoded = EncodedArray.from_array(array)
    assembler = ChunkAssembler(encoded.sha256, encoded.size)
    for chunk in chunk_messages(encoded, chunk_size=4096):
        assembler.add_chunk(chunk)

    buffer = assembler.finish()
    decoded = decode_array(buffer)

    assert np.array_equal(decoded, array)
    assert np.shares_memory(decoded, np.frombuffer(buffer, np.uint8))
    assert not decoded.flags.writeable


def test_file_assembled_array_decodes_from_the_map(tmp_path: Path) -> None:
    array = np.arange(50_000, dtype=np.int64)
    encoded = EncodedArray.from_array(array)
    sink = functools.partial(FileSink, tmp_path / "blob")
    with ChunkAssembler(encoded.sha256, encoded.size, sink=sink) as assembler:
        for chunk in chunk_messages(encoded, chunk_size=7919):  # a prime: ragged chunks
            assembler.add_chunk(chunk)
        buffer = assembler.finish()

    decoded = decode_array(buffer)

    assert np.array_equal(decoded, array)
    assert np.shares_memory(decoded, np.frombuffer(buffer, np.uint8))


class RecordingSink:
    """A sink that keeps only where it was written: sizes past 2 GiB cost nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.writes: list[tuple[int, int]] = []

    def write(self, offset: int, data: Any) -> None:
        self.writes.append((offset, len(data)))

    def finish(self) -> memoryview:
        raise AssertionError("not reached")

    def abort(self) -> None:
        self.writes.clear()


def test_payload_beyond_2_gib_is_declared_and_tracked() -> None:
    total = 3 * 2**30
    sinks: list[RecordingSink] = []

    def sink(size: int) -> RecordingSink:
        sinks.append(RecordingSink(size))
        return sinks[-1]

    assembler = ChunkAssembler("0" * 64, total, sink=sink)
    for offset, piece in iter_chunks([b"h" * 24, b"d" * 100], chunk_size=50):
        assembler.add(offset, piece)

    assert sinks[0].size == total
    assert sinks[0].writes == [(0, 24), (24, 26), (50, 50), (100, 24)]
    with pytest.raises(CodecError, match=f"124 of {total}"):
        assembler.finish()


def test_chunk_offsets_beyond_4_gib_survive_the_wire() -> None:
    chunk = transfer_pb2.Chunk(sha256="0" * 64, offset=5 * 2**32, total_size=6 * 2**32, data=b"x")

    parsed = transfer_pb2.Chunk.FromString(chunk.SerializeToString())

    assert (parsed.offset, parsed.total_size) == (5 * 2**32, 6 * 2**32)


def anonymous_rss_kib() -> int | None:
    """Resident anonymous memory (Linux); file pages a map brings in do not count."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return None


def test_300_mb_array_round_trip_without_copies(tmp_path: Path) -> None:
    array = np.arange(300 * 2**20 // 8, dtype=np.float64)  # 300 MiB
    encoded = EncodedArray.from_array(array)
    assert np.shares_memory(np.frombuffer(encoded.data, np.uint8), array)
    sink = functools.partial(FileSink, tmp_path / "model")
    before = anonymous_rss_kib()

    with ChunkAssembler(encoded.sha256, encoded.size, sink=sink) as assembler:
        for offset, piece in encoded.chunks(4 * 2**20):
            assembler.add(offset, piece)
        decoded = decode_array(assembler.finish())

    assert decoded.shape == array.shape
    assert np.array_equal(decoded[:: 2**16], array[:: 2**16])
    assert decoded[-1] == array[-1]
    after = anonymous_rss_kib()
    if before is not None and after is not None:
        # No second copy of the model in memory: the decoded array views the file map.
        assert after - before < 100 * 1024
    del decoded
    (tmp_path / "model").unlink()  # pytest keeps recent temporary directories


# Streams of several payloads


def test_read_chunks_yields_each_payload() -> None:
    payloads_ = [b"first payload", b"", b"x" * 100]
    stream = [c for p in payloads_ for c in chunk_messages(p, chunk_size=7)]

    got = [(h, bytes(v)) for h, v in read_chunks(stream)]

    assert got == [(sha(p), p) for p in payloads_]


def test_read_chunks_refuses_a_payload_cut_short_by_the_next() -> None:
    stream = [*list(chunk_messages(b"abcdef", chunk_size=2))[:2], *chunk_messages(b"xyz")]

    with pytest.raises(CodecError, match="truncated"):
        list(read_chunks(stream))


def test_read_chunks_refuses_a_stream_ending_mid_payload() -> None:
    stream = list(chunk_messages(b"abcdef", chunk_size=2))[:2]

    with pytest.raises(CodecError, match=r"truncated.*4 of 6"):
        list(read_chunks(stream))


def test_read_chunks_refuses_a_changed_total_size() -> None:
    first, second = chunk_messages(b"abcd", chunk_size=2)
    second.total_size = 5

    with pytest.raises(CodecError, match="in the stream of payload"):
        list(read_chunks([first, second]))


def test_read_chunks_resumes_a_kept_assembler() -> None:
    data = b"0123456789"
    kept = ChunkAssembler(sha(data), len(data))
    kept.add(0, data[:4])  # from an upload that broke off

    def start(sha256: str, total_size: int) -> ChunkAssembler:
        return kept if sha256 == kept.sha256 else ChunkAssembler(sha256, total_size)

    got = list(read_chunks(chunk_messages(data, chunk_size=3, offset=4), start))

    assert [(h, bytes(v)) for h, v in got] == [(sha(data), data)]


def test_read_chunks_enforces_the_maximum() -> None:
    with pytest.raises(CodecError, match="limit"):
        list(read_chunks(chunk_messages(b"x" * 100), max_size=10))


def test_broken_source_leaves_the_assembler_resumable() -> None:
    data = b"0123456789"
    kept = ChunkAssembler(sha(data), len(data))

    def broken() -> Any:
        yield from list(chunk_messages(data, chunk_size=4))[:1]
        raise ConnectionError("stream reset")

    with pytest.raises(ConnectionError):
        list(read_chunks(broken(), lambda s, n: kept))

    assert kept.offset == 4
    for chunk in chunk_messages(data, chunk_size=4, offset=kept.offset):
        kept.add_chunk(chunk)
    assert bytes(kept.finish()) == data


def test_chunk_message_parses_back() -> None:
    (chunk,) = chunk_messages(b"abc")

    parsed = transfer_pb2.Chunk.FromString(chunk.SerializeToString())

    assert parsed == chunk
