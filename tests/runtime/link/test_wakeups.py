"""Signals: wake-ups keyed by what changed, never missed between a read and a wait."""

from __future__ import annotations

import asyncio
import threading

from corolla.runtime.link._wakeups import Signals


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


def test_several_waiters_of_one_key_all_wake_and_are_forgotten() -> None:
    signals = Signals()
    seen = signals.generation("k")
    woke: list[bool] = []
    waiters = [
        threading.Thread(target=lambda: woke.append(signals.wait("k", seen, 10))) for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    for _ in range(2000):  # bounded: until all three wait
        if "k" in signals._waiters and signals._waiters["k"].count == 3:
            break
        threading.Event().wait(0.005)
    signals.notify(["k"])
    for waiter in waiters:
        waiter.join(10)

    assert woke == [True, True, True]
    assert signals._waiters == {}


def test_a_coroutine_is_woken_by_a_notify_from_another_thread() -> None:
    signals = Signals()

    async def scenario() -> tuple[bool, bool]:
        seen = signals.generation("k")
        quiet = await signals.wait_async("k", seen, timeout=0.01)
        notifier = threading.Timer(0.05, signals.notify, args=(["k"],))
        notifier.start()
        woke = await signals.wait_async("k", seen, timeout=10)
        notifier.join()
        return quiet, woke

    assert asyncio.run(scenario()) == (False, True)
    assert signals._waiters == {}


def test_a_waiting_coroutine_is_woken_by_close() -> None:
    signals = Signals()

    async def scenario() -> bool:
        seen = signals.generation("k")
        threading.Timer(0.05, signals.close).start()
        return await signals.wait_async("k", seen, timeout=10)

    assert asyncio.run(scenario()) and signals.closed
