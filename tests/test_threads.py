"""dhaga.to_thread: a bounded real thread pool for calls that cannot be made green."""

from __future__ import annotations

import contextvars
import threading

import pytest

import dhaga
from dhaga import Killed, Timeout
from dhaga.testing import settle
from dhaga.threads import set_thread_pool_size, thread_pool_size

pytestmark = pytest.mark.usefixtures("each_loop")

WAIT = 10.0


@pytest.fixture
def pool_size():
    """Set the pool size for one test and restore it afterwards."""
    before = thread_pool_size()
    yield set_thread_pool_size
    set_thread_pool_size(before)


def test_returns_value_raises_exception_and_runs_in_another_thread():
    me = threading.get_ident()
    assert dhaga.to_thread(threading.get_ident) != me
    assert dhaga.run(dhaga.to_thread, sorted, [3, 1, 2]) == [1, 2, 3]
    with pytest.raises(ZeroDivisionError):
        dhaga.to_thread(lambda: 1 / 0)


def test_pool_size_is_honoured(pool_size):
    pool_size(2)
    assert thread_pool_size() == 2
    guard, gate = threading.Lock(), threading.Event()
    running, peak, calls = [0], [0], [0]
    both_in = threading.Barrier(2)

    def blocking_call():
        with guard:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            calls[0] += 1
            first_two = calls[0] <= 2
        if first_two:
            both_in.wait(WAIT)  # the first two run at the same time
        gate.wait(WAIT)
        with guard:
            running[0] -= 1
        return threading.get_ident()

    ds = [dhaga.spawn(dhaga.to_thread, blocking_call) for _ in range(5)]
    while running[0] < 2:
        dhaga.sleep(0.001)  # wait until the pool is saturated
    settle()
    assert running[0] == 2  # the other three wait for a thread
    gate.set()
    idents = {d.result(timeout=WAIT) for d in ds}
    assert peak[0] == 2 and len(idents) <= 2


def test_contextvars_are_copied_into_the_thread():
    var = contextvars.ContextVar("var", default="unset")

    def body():
        var.set("caller's")

        def in_thread():
            seen = var.get()
            var.set("thread's")  # changes the copy only
            return seen

        return dhaga.to_thread(in_thread), var.get()

    assert dhaga.run(body) == ("caller's", "caller's")


def test_timeout_raises_and_the_result_is_dropped():
    gate, finished = threading.Event(), threading.Event()

    def slow():
        gate.wait(WAIT)
        finished.set()
        return "late"

    with pytest.raises(Timeout):
        dhaga.to_thread(slow, timeout=0.01)
    gate.set()
    assert finished.wait(WAIT)  # the thread could not be stopped; it ran to the end
    assert dhaga.to_thread(lambda: "next") == "next"  # a late wake-up does not confuse the next


def test_kill_while_waiting(pool_size):
    pool_size(1)
    gate = threading.Event()
    ran = []
    busy = dhaga.spawn(dhaga.to_thread, gate.wait, WAIT)
    queued = dhaga.spawn(dhaga.to_thread, ran.append, "queued call")
    settle()
    queued.kill()  # still waiting for a thread: its call is cancelled
    busy.kill()  # already running in a thread: the dhaga ends, the thread finishes alone
    assert queued.killed() and busy.killed()
    gate.set()
    assert dhaga.to_thread(lambda: "pool still usable") == "pool still usable"
    assert ran == []


def test_other_dhagas_run_while_a_thread_blocks():
    gate = threading.Event()
    ticks = []

    def ticker():
        for i in range(20):
            ticks.append(i)
            dhaga.sleep(0)
        gate.set()  # unblocks the thread below: proves the loop kept running

    dhaga.spawn(ticker)
    assert dhaga.to_thread(gate.wait, WAIT) is True
    assert ticks == list(range(20))


def test_blocking_error_in_a_coroutine():
    import asyncio

    async def coro():
        with pytest.raises(dhaga.BlockingError):
            dhaga.to_thread(abs, -1)
        return "checked"

    loop = dhaga.get_scheduler().loop
    assert dhaga.wait(asyncio.ensure_future(coro(), loop=loop)) == "checked"


def test_set_thread_pool_size_rejects_zero():
    with pytest.raises(ValueError):
        set_thread_pool_size(0)


def test_killed_exception_type_is_killed():
    d = dhaga.spawn(dhaga.to_thread, threading.Event().wait, 0.5)
    settle()
    d.kill()
    assert isinstance(d.exception(), Killed)
