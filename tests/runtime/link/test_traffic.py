"""The link's traffic meter: bytes and busy seconds by direction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corolla.runtime.link._traffic import DIRECTIONS, TrafficMeter


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _by_direction(meter: TrafficMeter) -> dict[str, tuple[int, int, float]]:
    return {t.direction: (t.bytes, t.transfers, t.busy_s) for t in meter.totals()}


def test_bytes_transfers_and_busy_seconds_are_counted_per_direction() -> None:
    clock = Clock()
    meter = TrafficMeter(clock)

    with meter.transfer("to_nodes") as transfer:
        transfer.count(100)
        clock.now = 2.0
        transfer.count(50)
    clock.now = 5.0
    with meter.transfer("from_nodes") as transfer:
        clock.now = 5.5
        transfer.count(7)

    totals = _by_direction(meter)
    assert totals["to_nodes"] == (150, 1, 2.0)
    assert totals["from_nodes"] == (7, 1, 0.5)
    assert totals["to_serverapps"] == totals["from_serverapps"] == (0, 0, 0.0)
    assert [t.direction for t in meter.totals()] == list(DIRECTIONS)


def test_overlapping_transfers_count_their_time_once() -> None:
    clock = Clock()
    meter = TrafficMeter(clock)
    first = meter.transfer("to_nodes")
    first.__enter__()
    clock.now = 1.0
    with meter.transfer("to_nodes"):
        clock.now = 3.0
    clock.now = 4.0
    first.__exit__(None, None, None)

    assert _by_direction(meter)["to_nodes"] == (0, 2, 4.0)


def test_a_transfer_in_flight_counts_its_time_so_far_and_a_failed_one_ends() -> None:
    clock = Clock()
    meter = TrafficMeter(clock)
    with pytest.raises(RuntimeError), meter.transfer("from_serverapps") as transfer:
        clock.now = 1.5
        transfer.count(10)
        assert meter.totals()[3].busy_s == 1.5
        raise RuntimeError("the stream broke")
    clock.now = 9.0

    (traffic,) = [t for t in meter.totals() if t.direction == "from_serverapps"]
    assert (traffic.bytes, traffic.busy_s, traffic.bytes_per_s) == (10, 1.5, 10 / 1.5)


def test_counted_counts_each_item_as_it_goes_by() -> None:
    meter = TrafficMeter(Clock())
    with meter.transfer("from_nodes") as transfer:
        items = transfer.counted([b"ab", b"cde"], len)
        assert next(items) == b"ab"
        assert meter.totals()[1].bytes == 2
        assert list(items) == [b"cde"]
    assert meter.totals()[1].bytes == 5


def test_an_unknown_direction_is_refused_naming_it() -> None:
    meter = TrafficMeter(Clock())
    with pytest.raises(ValueError, match="'sideways'"), meter.transfer("sideways"):
        pass
    assert all(t.transfers == 0 for t in meter.totals())
    assert meter.totals()[0].bytes_per_s is None


@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.integers(1, 300)).map(lambda t: [t[0], t[0] + t[1]]),
        min_size=1,
        max_size=12,
    )
)
def test_busy_seconds_are_the_length_of_the_union_of_the_transfers(
    intervals: list[list[int]],
) -> None:
    # Each interval [start, end] is one transfer; events are replayed in time order
    # (an end before a start at the same instant, so touching intervals are one span).
    clock = Clock()
    meter = TrafficMeter(clock)
    events = sorted(
        [(start, 1, i) for i, (start, _) in enumerate(intervals)]
        + [(end, 0, i) for i, (_, end) in enumerate(intervals)]
    )
    open_transfers = {}
    for time, kind, i in events:
        clock.now = float(time)
        if kind == 1:
            open_transfers[i] = meter.transfer("to_nodes")
            open_transfers[i].__enter__()
        else:
            open_transfers.pop(i).__exit__(None, None, None)

    covered = set()
    for start, end in intervals:
        covered.update(range(start, end))
    assert meter.totals()[0].busy_s == len(covered)
    assert meter.totals()[0].transfers == len(intervals)


def test_idle_since_is_when_the_last_transfer_ended_and_none_while_one_runs() -> None:
    clock = Clock()
    meter = TrafficMeter(clock)
    assert meter.idle_since() == 0.0

    clock.now = 3.0
    with meter.transfer("to_nodes"):
        clock.now = 4.0
        with meter.transfer("from_nodes"):
            clock.now = 5.0
            assert meter.idle_since() is None
        assert meter.idle_since() is None  # one still in flight the other way
        clock.now = 6.0

    assert meter.idle_since() == 6.0
