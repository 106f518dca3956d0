"""Clocks: the machine's, and one a test moves by hand."""

from __future__ import annotations

import time

import pytest

from corolla.runtime import Clock, ManualClock, SystemClock


def test_the_system_clock_reads_the_machine_s_clocks() -> None:
    clock: Clock = SystemClock()

    before = time.time()
    read = clock.time()
    after = time.time()

    assert before <= read <= after
    assert clock.monotonic() <= time.monotonic()


def test_a_manual_clock_stands_still_until_advanced() -> None:
    clock = ManualClock(start=100.0)

    first = (clock.time(), clock.monotonic())
    clock.advance(2.5)

    assert first == (100.0, 0.0)
    assert (clock.time(), clock.monotonic()) == (102.5, 2.5)


def test_a_manual_clock_does_not_go_back() -> None:
    clock = ManualClock()

    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1.0)
