"""LoopBatcher: what is submitted while a batch runs forms the next batch; each submitter
gets its own result or error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures

import pytest

from corolla.runtime.link._batching import LoopBatcher

WAIT_S = 10.0


class _Batches:
    """A ``run_batch`` that records its batches and holds the first until released."""

    def __init__(self, outcome: Callable[[int], object] = lambda item: item * 10) -> None:
        self.seen: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._outcome = outcome

    def __call__(self, items: Sequence[int]) -> list[object]:
        self.seen.append(list(items))
        if len(self.seen) == 1:
            self.entered.set()
            if not self.release.wait(WAIT_S):
                raise TimeoutError("the first batch was never released")
        return [self._outcome(item) for item in items]


@pytest.fixture
def executor() -> Iterator[futures.ThreadPoolExecutor]:
    with futures.ThreadPoolExecutor(2, thread_name_prefix="batch-test") as pool:
        yield pool


async def _while_held(
    batcher: LoopBatcher[int, object],
    batches: _Batches,
    later: list[int],
    *,
    cancel: frozenset[int] = frozenset(),
) -> list[object]:
    """Submit 0; while its batch runs, submit ``later`` (cancelling the submitters of
    ``cancel``); release the batch; every submitter's outcome, in order."""
    first = asyncio.ensure_future(batcher.submit(0))
    assert await asyncio.to_thread(batches.entered.wait, WAIT_S)
    rest = [asyncio.ensure_future(batcher.submit(item)) for item in later]
    await asyncio.sleep(0)  # each of them runs up to waiting for its result
    for item, task in zip(later, rest):
        if item in cancel:
            task.cancel()
    batches.release.set()
    return await asyncio.wait_for(asyncio.gather(first, *rest, return_exceptions=True), WAIT_S)


def test_submissions_made_while_a_batch_runs_form_the_next_batch(
    executor: futures.Executor,
) -> None:
    batches = _Batches()
    batcher: LoopBatcher[int, object] = LoopBatcher(executor, batches)

    outcomes = asyncio.run(_while_held(batcher, batches, [1, 2, 3, 4]))

    assert batches.seen == [[0], [1, 2, 3, 4]]
    assert outcomes == [0, 10, 20, 30, 40]


def test_a_batch_holds_at_most_max_batch_items(executor: futures.Executor) -> None:
    batches = _Batches()
    batcher: LoopBatcher[int, object] = LoopBatcher(executor, batches, max_batch=2)

    outcomes = asyncio.run(_while_held(batcher, batches, [1, 2, 3, 4, 5]))

    assert batches.seen == [[0], [1, 2], [3, 4], [5]]
    assert outcomes == [0, 10, 20, 30, 40, 50]


def test_a_batch_holds_at_most_max_bytes_of_items_and_at_least_one(
    executor: futures.Executor,
) -> None:
    # Item i holds i bytes; at most 5 bytes a batch, and an item over it goes alone.
    batches = _Batches()
    batcher: LoopBatcher[int, object] = LoopBatcher(
        executor, batches, size=lambda item: item, max_bytes=5
    )

    outcomes = asyncio.run(_while_held(batcher, batches, [1, 2, 2, 3, 9, 1]))

    assert batches.seen == [[0], [1, 2, 2], [3], [9], [1]]
    assert outcomes == [0, 10, 20, 20, 30, 90, 10]


def test_an_items_exception_reaches_its_submitter_alone(executor: futures.Executor) -> None:
    batches = _Batches(lambda item: ValueError(f"item {item}") if item % 2 else item * 10)
    batcher: LoopBatcher[int, object] = LoopBatcher(executor, batches)

    outcomes = asyncio.run(_while_held(batcher, batches, [1, 2, 3]))

    assert batches.seen == [[0], [1, 2, 3]]
    assert outcomes[0::2] == [0, 20]
    assert [str(e) for e in outcomes[1::2] if isinstance(e, ValueError)] == ["item 1", "item 3"]


def test_an_exception_of_a_whole_batch_reaches_each_of_its_submitters(
    executor: futures.Executor,
) -> None:
    def outcome(item: int) -> object:
        if item == 13:
            raise RuntimeError("the batch failed")
        return item * 10

    batches = _Batches(outcome)
    batcher: LoopBatcher[int, object] = LoopBatcher(executor, batches)

    async def main() -> tuple[list[object], object]:
        outcomes = await _while_held(batcher, batches, [1, 13, 2])
        return outcomes, await asyncio.wait_for(batcher.submit(5), WAIT_S)

    outcomes, afterwards = asyncio.run(main())

    assert outcomes[0] == 0
    error = outcomes[1]
    assert isinstance(error, RuntimeError) and str(error) == "the batch failed"
    assert outcomes[1:] == [error, error, error]
    assert afterwards == 50  # the batcher goes on


def test_a_batch_giving_the_wrong_number_of_results_fails_its_submitters(
    executor: futures.Executor,
) -> None:
    def run_batch(items: Sequence[int]) -> list[object]:
        results: list[object] = [item * 10 for item in items]
        return results[:1]

    batcher: LoopBatcher[int, object] = LoopBatcher(executor, run_batch)

    async def main() -> list[object]:
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT_S)

    outcomes = asyncio.run(main())

    assert len(outcomes) == 3
    for outcome in outcomes:
        assert isinstance(outcome, RuntimeError)
        assert "a batch of 3 items gave 1 results" in str(outcome)


def test_a_cancelled_submitter_is_skipped(executor: futures.Executor) -> None:
    batches = _Batches()
    batcher: LoopBatcher[int, object] = LoopBatcher(executor, batches)

    async def main() -> tuple[list[object], object]:
        outcomes = await _while_held(batcher, batches, [1, 2, 3], cancel=frozenset({2}))
        return outcomes, await asyncio.wait_for(batcher.submit(4), WAIT_S)

    outcomes, afterwards = asyncio.run(main())

    assert outcomes[:2] == [0, 10] and outcomes[3] == 30
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert afterwards == 40
