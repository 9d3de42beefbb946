"""eventlet's parts of the loop: its wake-up signal, the writer thread, and the grid job
sleeps end on."""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace
from typing import Any

import eventlet
import eventlet.event
import pytest

from app import concurrency
from app.concurrency import _HubSignal, _WriterThread
from app.jobs import context as job_context
from tests.helpers import stored_job_context


def test_a_set_before_the_wait_is_not_lost():
    signal = _HubSignal()
    signal.set()
    assert signal.wait(1.0) is True
    assert signal.wait(0.01) is False  # re-armed: nothing set since


def test_a_set_from_another_greenlet_wakes_the_waiter():
    signal = _HubSignal()
    waiter = eventlet.spawn(signal.wait, 5.0)
    eventlet.sleep(0)  # the waiter waits now
    signal.set()
    assert waiter.wait() is True


def test_a_wait_times_out_unset():
    signal = _HubSignal()
    assert eventlet.spawn(signal.wait, 0.01).wait() is False


def test_a_stale_wake_up_does_not_end_the_next_wait():
    """A set and a timeout due in one turn: the waiter resumes once (set), and the wake-up
    left over must not end its next wait."""
    signal = _HubSignal()
    results: list[bool] = []

    def loop() -> None:
        results.append(signal.wait(0))  # its timeout is due at once
        results.append(signal.wait())  # no timeout: only a set ends it

    waiter = eventlet.spawn(loop)
    eventlet.sleep(0)  # the waiter is in its first wait
    signal.set()  # its wake-up is due after the timeout, in the same turn
    eventlet.sleep(0.05)
    assert results == [True]  # the second wait still waits
    signal.set()
    waiter.wait()
    assert results == [True, True]


def test_a_greenlet_killed_while_waiting_leaves_the_signal_usable():
    signal = _HubSignal()
    waiter = eventlet.spawn(signal.wait, 5.0)
    eventlet.sleep(0)
    waiter.kill()
    signal.set()
    eventlet.sleep(0)  # the wake-up finds nobody waiting
    assert eventlet.spawn(signal.wait, 1.0).wait() is True


def _fake_clock(monkeypatch: pytest.MonkeyPatch, clock: list[float], sleep: Any) -> None:
    """The job context's own clock and sleep (its module's names, not the shared ``time``
    module or the extension: other threads of the test process sleep too)."""
    monkeypatch.setattr(job_context, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(job_context, "socketio", SimpleNamespace(sleep=sleep))
    monkeypatch.setattr(job_context, "sleep_until", lambda moment: sleep(moment - clock[0]))


@pytest.mark.parametrize("seconds", [0.05, 0.1, 0.2337])
def test_a_job_sleep_ends_on_the_grid_and_never_early(app, auth, monkeypatch, seconds):
    clock = [1000.0012]
    slept: list[float] = []

    def fake_sleep(duration: float) -> None:
        slept.append(duration)
        clock[0] += duration

    _fake_clock(monkeypatch, clock, fake_sleep)
    with app.app_context():
        ctx = stored_job_context(auth.create_user("alice"))
    start = clock[0]
    ctx.sleep(seconds)
    assert clock[0] >= start + seconds
    assert clock[0] - (start + seconds) < job_context.SLEEP_GRID
    steps = clock[0] / job_context.SLEEP_GRID
    assert math.isclose(steps, round(steps), abs_tol=1e-6)


def test_a_short_sleep_is_not_stretched_to_the_grid(app, auth, monkeypatch):
    clock = [1000.0012]
    _fake_clock(monkeypatch, clock, lambda duration: clock.__setitem__(0, clock[0] + duration))
    with app.app_context():
        ctx = stored_job_context(auth.create_user("alice"))
    ctx.sleep(0.003)
    assert clock[0] == pytest.approx(1000.0042)


def test_greenlets_sleeping_until_one_moment_share_one_hub_timer_and_a_killed_one_stays_dead(monkeypatch):
    from eventlet import hubs

    monkeypatch.setattr(concurrency.socketio, "async_mode", "eventlet")
    hub = hubs.get_hub()
    moment = time.monotonic() + 0.05
    woken: list[int] = []

    def sleeper(n: int) -> None:
        concurrency.sleep_until(moment)
        woken.append(n)

    timers_before = hub.get_timers_count()
    sleepers = [eventlet.spawn(sleeper, n) for n in range(20)]
    eventlet.sleep(0)  # every sleeper is waiting now
    assert hub.get_timers_count() - timers_before == 1
    sleepers[3].kill()
    for index, green in enumerate(sleepers):
        if index != 3:
            green.wait()
    assert woken == [n for n in range(20) if n != 3]
    assert time.monotonic() >= moment


def test_the_writer_thread_runs_calls_in_order_off_the_loop():
    writer = _WriterThread()
    main = threading.get_ident()
    seen: list[tuple[int, int]] = []
    callers = [eventlet.spawn(writer.run, lambda n=n: seen.append((n, threading.get_ident())) or n) for n in range(5)]
    assert [caller.wait() for caller in callers] == list(range(5))
    assert [n for n, _ in seen] == list(range(5))
    assert len({ident for _, ident in seen}) == 1 and seen[0][1] != main


def test_the_writer_thread_raises_the_calls_error_in_its_caller():
    writer = _WriterThread()

    def broken() -> None:
        raise ValueError("disk on fire")

    with pytest.raises(ValueError, match="disk on fire"):
        eventlet.spawn(writer.run, broken).wait()
    assert eventlet.spawn(writer.run, lambda: 42).wait() == 42  # the thread lives on


def test_the_loop_runs_while_the_writer_thread_works():
    writer = _WriterThread()
    release = threading.Event()  # a real event: the thread blocks on it, the loop does not
    ticks: list[int] = []

    def ticker() -> None:
        for n in range(5):
            ticks.append(n)
            eventlet.sleep(0.001)
        release.set()

    caller = eventlet.spawn(writer.run, lambda: release.wait(5) and "done")
    eventlet.spawn(ticker)
    assert caller.wait() == "done"
    assert ticks == list(range(5))


def test_a_caller_that_stopped_waiting_is_not_resumed_by_its_late_result():
    writer = _WriterThread()
    release = threading.Event()
    later = eventlet.event.Event()

    def caller() -> Any:
        with pytest.raises(eventlet.Timeout):
            with eventlet.Timeout(0.01):
                writer.run(lambda: release.wait(5))
        release.set()  # the call ends now; its result must find nobody
        return later.wait()

    waiting = eventlet.spawn(caller)
    eventlet.sleep(0.1)
    later.send("the right wake-up")
    assert waiting.wait() == "the right wake-up"
