"""The scheduler's timer heap: order, cancelling, compaction, re-arming, errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import LOOPS

import dhaga
from dhaga._core import timers as _timers
from dhaga._core.timers import TimerQueue


@pytest.fixture
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def run_until(loop, predicate, seconds=10.0):
    """Run loop iterations until ``predicate()``; bounded by ``seconds`` of wall time.

    Bounded by time, not by a count of iterations: an idle iteration can take a microsecond,
    so any count small enough to bound the test could end before a 30 ms timer is due.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        loop.call_soon(loop.stop)
        loop.run_forever()
    if not predicate():
        raise AssertionError("condition not met")


def test_timers_fire_in_deadline_order_whatever_the_order_added(loop):
    tq, fired = TimerQueue(loop), []
    for delay in (0.03, 0.01, 0.02, 0.0, 0.01):
        tq.call_later(delay, fired.append, delay)
    run_until(loop, lambda: len(fired) == 5)
    assert fired == [0.0, 0.01, 0.01, 0.02, 0.03]
    assert len(tq) == 0 and tq._armed is None


class CoarseClockLoop(asyncio.SelectorEventLoop):
    """A loop whose clock ticks in 10 ms steps, as libuv's (uvloop's) cached coarse clock does."""

    def time(self):
        return time.monotonic() // 0.01 * 0.01


@pytest.fixture(params=[*LOOPS, "coarse clock"])
def any_loop(request):
    if request.param == "uvloop":
        import uvloop

        lp = uvloop.new_event_loop()
    elif request.param == "coarse clock":
        lp = CoarseClockLoop()
    else:
        lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def late_in_a_coarse_tick():
    """Wait (at most one 10 ms tick) for a moment when the coarse clock lags most, and return it."""
    for _ in range(10_000_000):
        now = time.monotonic()
        if now % 0.01 >= 0.007:
            return now
    raise AssertionError("time.monotonic() did not advance")


def test_a_timer_never_fires_before_its_deadline(any_loop):
    # Measured with the clock users measure with, whatever the loop's own clock says.
    tq, at = TimerQueue(any_loop), []
    for _ in range(5):
        start = late_in_a_coarse_tick()
        tq.call_later(0.015, lambda: at.append(time.monotonic()))
        run_until(any_loop, lambda: at)
        assert at.pop() - start >= 0.015


def test_cancelled_timers_do_not_fire_and_release_their_arguments(loop):
    tq, fired = TimerQueue(loop), []
    keep = tq.call_later(0.0, fired.append, "kept")
    drop = tq.call_later(0.0, fired.append, "dropped")
    drop.cancel()
    drop.cancel()  # idempotent
    assert drop.cancelled() and drop._args is None and len(tq) == 1
    run_until(loop, lambda: fired)
    assert fired == ["kept"] and keep.cancelled()  # a fired timer counts as done
    keep.cancel()  # after firing: a no-op
    assert tq._cancelled == 0 and not tq._heap


def test_many_cancelled_timers_are_compacted_away(loop):
    tq = TimerQueue(loop)
    timers = [tq.call_later(60, int) for _ in range(3 * _timers._COMPACT_MIN)]
    for t in timers[1:]:
        t.cancel()
    tq.call_later(61, int)  # an add notices how many are cancelled
    assert len(tq._heap) == 2 and tq._cancelled == 0 and len(tq) == 2
    tq.close()


def test_an_earlier_timer_rearms_the_loop_timer(loop):
    tq, fired = TimerQueue(loop), []
    tq.call_later(60, fired.append, "late")
    tq.call_later(0.0, fired.append, "early")
    run_until(loop, lambda: fired)
    assert (
        fired == ["early"] and tq._armed is not None and tq._armed_at > time.monotonic()
    )
    tq.close()
    assert tq._armed is None and len(tq) == 0


def test_timers_added_while_firing_keep_the_earliest_deadline(loop):
    tq, fired = TimerQueue(loop), []

    def first():
        fired.append("first")
        tq.call_later(30, fired.append, "much later")  # added while `second` is pending

    tq.call_later(0.0, first)
    tq.call_later(0.02, fired.append, "second")
    run_until(loop, lambda: len(fired) == 2)
    assert fired == ["first", "second"]
    tq.close()


def test_a_failing_callback_is_reported_and_the_others_still_run(loop):
    tq, fired, reported = TimerQueue(loop), [], []
    loop.set_exception_handler(
        lambda _loop, context: reported.append(context["exception"])
    )
    tq.call_later(0.0, lambda: 1 / 0)
    tq.call_later(0.0, fired.append, "after")
    run_until(loop, lambda: fired)
    assert fired == ["after"] and isinstance(reported[0], ZeroDivisionError)


def test_sleep_and_timeouts_go_through_the_scheduler_timers():
    sched = dhaga.get_scheduler()

    def sleeper():
        dhaga.sleep(30)

    d = dhaga.spawn(sleeper)
    dhaga.sleep(0)  # it started and sleeps: its timer is in the heap
    assert len(sched.timers) == 1
    d.kill()
    assert len(sched.timers) == 0  # the wake-up cancelled it
    with dhaga.timeout(30):
        assert len(sched.timers) == 1
    assert len(sched.timers) == 0
    with pytest.raises(dhaga.Timeout):
        with dhaga.timeout(0.01):
            dhaga.sleep(30)
    assert len(sched.timers) == 0


# ---------------------------------------------------------------------------- expiry entries
class _Waits:
    """Stands for the scheduler: which (waiter, tag) waits are still live, and who expired."""

    def __init__(self):
        self.live_set, self.expired = set(), []

    def expire(self, waiter, tag):
        if (waiter, tag) not in self.live_set:
            return False
        self.live_set.discard((waiter, tag))
        self.expired.append(waiter)
        return True

    def live(self, waiter, tag):
        return (waiter, tag) in self.live_set


def test_an_expiry_calls_expire_at_its_deadline_and_a_stale_one_is_dropped(loop):
    w = _Waits()
    tq = TimerQueue(loop, w.expire, w.live)
    w.live_set |= {("a", 1), ("b", 1)}
    tq.expire_later(0.01, "a", 1)
    tq.expire_later(0.02, "b", 1)
    w.live_set.discard(("b", 1))  # b's wait ended first
    tq.stale()
    assert len(tq) == 1
    run_until(loop, lambda: w.expired)
    assert w.expired == ["a"]
    # b's entry was at the top, stale: dropped without waiting for its deadline
    assert not tq._heap and tq._cancelled == 0 and tq._armed is None


def test_many_stale_expiries_are_compacted_away(loop):
    w = _Waits()
    tq = TimerQueue(loop, w.expire, w.live)
    for i in range(3 * _timers._COMPACT_MIN):
        tq.expire_later(60, "w", i)
    for _ in range(3 * _timers._COMPACT_MIN):
        tq.stale()  # each wait ended early (a read that got its data)
    w.live_set.add(("w", "kept"))
    tq.expire_later(61, "w", "kept")  # an add notices how many are stale
    assert len(tq._heap) == 1 and tq._cancelled == 0 and len(tq) == 1
    tq.close()
    assert not tq._heap


def test_timed_waits_that_end_early_leave_nothing_behind():
    # A green read with a timeout that gets its data before the deadline, many times over:
    # the heap holds stale entries only until compaction, never one per wait ever made.
    from dhaga import net

    sched = dhaga.get_scheduler()
    a, b = net.socketpair()
    a.settimeout(60)
    try:
        for _ in range(4 * _timers._COMPACT_MIN):
            d = dhaga.spawn(b.sendall, b"x")  # runs once the read below has parked
            assert a.recv(1) == b"x"
            d.join()
        assert len(sched.timers) == 0
        assert len(sched.timers._heap) <= 2 * _timers._COMPACT_MIN + 2
    finally:
        a.close()
        b.close()


def test_stale_counts_stay_exact_when_entries_go_before_their_waits_end():
    # Waits woken (here: killed) but not yet run when the heap drops their entries (a
    # compaction) count them stale only once they run: the heap must neither count them
    # twice nor let its length go negative (which a worker's shutdown once hit).
    from dhaga import net

    sched = dhaga.get_scheduler()
    tq = sched.timers
    pairs = [net.socketpair() for _ in range(5)]
    try:
        for a, _ in pairs:
            a.settimeout(60)
        ds = [dhaga.spawn(a.recv, 1) for a, _ in pairs]
        dhaga.sleep(0)  # every read has parked with its expiry entry
        assert len(tq) == 5
        for d in ds:
            d.kill(block=False)  # woken with Killed; they have not run yet
        tq._compact()  # drops the five entries before the waits count them
        assert not tq._heap and len(tq) >= 0
        dhaga.joinall(ds, raise_error=False)
        assert all(d.killed() for d in ds)
        assert tq._cancelled == 0 and len(tq) == 0
    finally:
        for a, b in pairs:
            a.close()
            b.close()
