"""serving.background.PeriodicLoop: ticks, survives a failing tick, stops with a final flush, and
a stop stays bounded when a tick hangs."""

from __future__ import annotations

import threading
import time

import pytest

from serving.background import PeriodicLoop


def wait_for(check: object, timeout_s: float = 5.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("not within the timeout")
        time.sleep(0.01)


def test_ticks_until_stopped_then_flushes_once_on_its_thread() -> None:
    ticks: list[str] = []
    finals: list[str] = []
    loop = PeriodicLoop(
        "test-loop",
        lambda: ticks.append(threading.current_thread().name),
        0.01,
        final=lambda: finals.append(threading.current_thread().name),
    )
    loop.start()
    assert loop.started
    wait_for(lambda: len(ticks) >= 3)
    assert loop.stop(timeout_s=5)
    assert not loop.alive and not loop.started
    assert set(ticks) == {"test-loop"}
    assert finals == ["test-loop"]  # exactly once, after the last tick
    count = len(ticks)
    time.sleep(0.05)
    assert len(ticks) == count  # no tick after the stop


def test_waits_an_interval_before_the_first_tick_unless_told_to_tick_first() -> None:
    late: list[float] = []
    early: list[float] = []
    waiting = PeriodicLoop("waits", lambda: late.append(time.monotonic()), 60)
    eager = PeriodicLoop("eager", lambda: early.append(time.monotonic()), 60, tick_first=True)
    waiting.start()
    eager.start()
    try:
        wait_for(lambda: len(early) == 1)
        time.sleep(0.05)
        assert late == []
    finally:
        started = time.monotonic()
        assert waiting.stop() and eager.stop()
        assert time.monotonic() - started < 1.0  # a stop cuts the wait short


def test_wake_cuts_the_wait_short() -> None:
    ticks: list[float] = []
    loop = PeriodicLoop("woken", lambda: ticks.append(time.monotonic()), 60)
    loop.start()
    try:
        loop.wake()
        wait_for(lambda: len(ticks) == 1)
    finally:
        loop.stop()


def test_a_failing_tick_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def tick() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    loop = PeriodicLoop("flaky", tick, 0.01)
    loop.start()
    try:
        wait_for(lambda: len(calls) >= 3)
        assert loop.alive
    finally:
        loop.stop()
    assert "flaky: tick failed" in caplog.text and "boom" in caplog.text


def test_a_tick_returning_false_backs_off() -> None:
    ticks: list[float] = []

    def tick() -> bool:
        ticks.append(time.monotonic())
        return False

    loop = PeriodicLoop("backing-off", tick, 0.01, backoff_s=0.3)
    loop.start()
    try:
        wait_for(lambda: len(ticks) >= 2)
    finally:
        loop.stop()
    assert ticks[1] - ticks[0] >= 0.3


def test_stop_is_bounded_when_a_tick_hangs() -> None:
    entered = threading.Event()
    release = threading.Event()
    finals: list[int] = []

    def hang() -> None:
        entered.set()
        release.wait(30)

    loop = PeriodicLoop("hung", hang, 0.01, final=lambda: finals.append(1), stop_timeout_s=0.3)
    loop.start()
    assert entered.wait(5)
    started = time.monotonic()
    assert not loop.stop()  # the thread did not end: the caller is told
    assert 0.25 <= time.monotonic() - started < 2.0
    assert finals == []
    # Started again, the new run is not confused by the one left behind.
    entered.clear()
    loop.start()
    release.set()  # the old tick returns: its run sees its own stop and flushes once
    wait_for(lambda: finals == [1])
    assert loop.alive
    assert loop.stop(timeout_s=5)
    assert finals == [1, 1]


def test_stop_without_start_returns_at_once() -> None:
    loop = PeriodicLoop("idle", lambda: None, 60)
    assert loop.stop()
    assert not loop.alive
