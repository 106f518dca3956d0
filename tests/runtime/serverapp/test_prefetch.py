"""prefetched: downloads run ahead of the consumer, within their bounds, errors in turn."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from corolla.runtime.serverapp._prefetch import prefetched


class _Fetches:
    """Records fetches, and how many were fetched and not yet done with at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fetched: list[int] = []
        self.consumed = 0
        self.most_ahead = 0

    def __call__(self, item: int) -> None:
        with self.lock:
            self.fetched.append(item)
            self.most_ahead = max(self.most_ahead, len(self.fetched) - self.consumed)


def test_every_response_comes_in_order_after_its_fetch():
    fetches = _Fetches()
    got = []

    for item in prefetched(iter(range(50)), fetches, lambda i: 1, lambda: None, depth=4):
        assert item in fetches.fetched
        got.append(item)
        fetches.consumed += 1

    assert got == list(range(50))
    assert 1 <= fetches.most_ahead <= 4


def test_a_byte_budget_keeps_large_responses_one_at_a_time():
    fetches = _Fetches()

    for _ in prefetched(iter(range(10)), fetches, lambda i: 100, lambda: None, max_bytes=150):
        threading.Event().wait(0.002)  # time for the reader to run ahead, if it could
        fetches.consumed += 1

    assert fetches.most_ahead == 1


def test_a_failed_fetch_is_raised_in_its_turn():
    def fetch(item: int) -> None:
        if item == 3:
            raise ValueError("download failed")

    got = []
    with pytest.raises(ValueError, match="download failed"):
        for item in prefetched(iter(range(10)), fetch, lambda i: 1, lambda: None):
            got.append(item)

    assert got == [0, 1, 2]


def test_a_failed_stream_is_raised_after_what_came_before():
    def responses() -> Iterator[int]:
        yield 0
        yield 1
        raise ConnectionError("stream broke")

    got = []
    with pytest.raises(ConnectionError, match="stream broke"):
        for item in prefetched(responses(), lambda i: None, lambda i: 1, lambda: None):
            got.append(item)

    assert got == [0, 1]


def test_stopping_early_cancels_the_stream_and_joins_the_threads():
    cancelled = threading.Event()

    def responses() -> Iterator[int]:
        yield 0
        for _ in range(1000):  # bounded: a stream that would go on until cancelled
            if cancelled.wait(0.01):
                raise ConnectionError("cancelled")
        yield 1

    before = threading.active_count()
    replies = prefetched(responses(), lambda i: None, lambda i: 1, cancelled.set)

    assert next(replies) == 0
    replies.close()

    assert cancelled.is_set()
    assert threading.active_count() == before


def test_a_response_of_size_0_is_fetched_on_the_reading_thread():
    threads: dict[int, str] = {}
    lock = threading.Lock()

    def fetch(item: int) -> None:
        with lock:
            threads[item] = threading.current_thread().name

    def size(item: int) -> int:
        return 5 if item % 3 == 0 else 0  # 0, 3, 6, 9 have arrays to download

    got = list(prefetched(iter(range(12)), fetch, size, lambda: None, depth=4))

    assert got == list(range(12))
    assert sorted(threads) == list(range(12))
    on_reader = {i for i, name in threads.items() if name == "corolla-prefetch-read"}
    assert on_reader == {i for i in range(12) if size(i) == 0}
