"""Signals: wake-ups keyed by what changed, never missed between a read and a wait."""

from __future__ import annotations

import threading

from corolla.runtime._signal import Signals


def test_a_notify_before_the_wait_is_not_missed() -> None:
    signals = Signals()
    seen = signals.generation("k")
    signals.notify(["k"])
    assert signals.wait("k", seen, timeout=0)


def test_other_keys_do_not_wake_a_waiter() -> None:
    signals = Signals()
    seen = signals.generation("k")
    signals.notify(["other"])
    assert not signals.wait("k", seen, timeout=0)


def test_notify_all_and_close_wake_every_key() -> None:
    signals = Signals()
    seen = signals.generation("never-notified")
    signals.notify_all()
    assert signals.wait("never-notified", seen, timeout=0)
    seen = signals.generation("k")
    woke = threading.Event()
    waiter = threading.Thread(target=lambda: signals.wait("k", seen, 10) and woke.set())
    waiter.start()
    signals.close()
    waiter.join(10)
    assert woke.is_set() and signals.closed
