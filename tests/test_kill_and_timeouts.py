"""Kill and timeout semantics: wherever a dhaga blocks, kills and timeouts reach it cleanly."""

from __future__ import annotations

import asyncio

import pytest

import dhaga
from dhaga import Killed, Timeout
from dhaga.sync import Event, Queue
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")


def test_kill_sleeping_dhaga():
    cleaned = []

    def sleeper():
        try:
            dhaga.sleep(100)
        finally:
            cleaned.append(True)

    d = dhaga.spawn(sleeper)
    settle()
    d.kill()
    assert d.done() and d.killed() and cleaned == [True]
    with pytest.raises(Killed):
        d.result()


def test_kill_dhaga_waiting_on_event_unregisters_it():
    ev = Event()
    d = dhaga.spawn(ev.wait)
    settle()
    assert len(ev._waiters) == 1
    d.kill()
    assert ev._waiters == {}
    assert isinstance(d.exception(), Killed)


def test_kill_dhaga_waiting_on_future():
    fut = dhaga.get_scheduler().loop.create_future()
    d = dhaga.spawn(dhaga.wait, fut)
    settle()
    d.kill()
    assert d.killed()
    assert not fut.cancelled()  # a future passed in is not ours to cancel
    fut.set_result(1)


def test_kill_dhaga_waiting_on_coroutine_cancels_its_task():
    loop = dhaga.get_scheduler().loop
    started, cancelled = loop.create_future(), loop.create_future()

    async def slow():
        started.set_result(True)
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cancelled.set_result(True)
            raise

    d = dhaga.spawn(dhaga.wait, slow())
    dhaga.wait(started, timeout=10)
    d.kill()
    assert d.killed() and dhaga.wait(cancelled, timeout=10) is True


def test_kill_dhaga_joined_by_others_wakes_the_joiners():
    target = dhaga.spawn(dhaga.sleep, 100)
    joiners = [dhaga.spawn(target.join) for _ in range(3)]
    settle()
    target.kill()
    assert [j.result() for j in joiners] == [True, True, True]


def test_kill_not_started_dhaga_never_runs():
    ran = []
    d = dhaga.spawn(ran.append, 1)
    d.kill()
    settle()
    assert ran == [] and d.done() and d.killed()
    with pytest.raises(Killed):
        d.result()
    assert dhaga.get_scheduler().alive == 0


def test_kill_with_custom_exception_and_instance():
    d1 = dhaga.spawn(dhaga.sleep, 100)
    d2 = dhaga.spawn(dhaga.sleep, 100)
    settle()
    d1.kill(ValueError)
    err = KeyError("mine")
    d2.kill(err)
    assert isinstance(d1.exception(), ValueError)
    assert d2.exception() is err


def test_kill_block_false_returns_at_once():
    def stubborn():
        try:
            dhaga.sleep(100)
        except Killed:
            dhaga.sleep(0.01)  # cleanup that blocks
            return "cleaned"

    d = dhaga.spawn(stubborn)
    settle()
    d.kill(block=False)
    assert not d.done()
    assert d.result() == "cleaned"


def test_kill_finished_dhaga_is_a_noop():
    d = dhaga.spawn(lambda: 3)
    d.join()
    d.kill()
    assert d.result() == 3


def test_kill_self_raises_at_once():
    def suicidal():
        dhaga.current().kill()
        return "not reached"

    d = dhaga.spawn(suicidal)
    with pytest.raises(Killed):
        d.result()


def test_killed_is_not_caught_by_except_exception():
    caught = []

    def careless():
        try:
            dhaga.sleep(100)
        except Exception:  # noqa: BLE001 - what careless user code does
            caught.append("swallowed")

    d = dhaga.spawn(careless)
    settle()
    d.kill()
    assert caught == [] and d.killed()


def test_kill_after_wake_keeps_the_value_and_fires_at_next_block():
    q = Queue()
    got = []

    def consumer():
        got.append(q.get())  # woken with the item
        dhaga.sleep(100)  # the kill lands here

    d = dhaga.spawn(consumer)
    settle()
    q.put("item")  # consumer is now runnable, holding the item
    d.kill()
    assert got == ["item"] and d.killed()


def test_kill_timeout_raises_timeout_when_victim_ignores_it():
    def immortal():
        while True:
            try:
                dhaga.sleep(100)
            except Killed:
                continue

    d = dhaga.spawn(immortal)
    settle()
    with pytest.raises(Timeout):
        d.kill(timeout=0.02)
    d.kill(RuntimeError, block=False)
    assert isinstance(d.exception(), RuntimeError)


# ---------------------------------------------------------------------- timeout()
def test_timeout_block_raises_its_own_instance():
    with pytest.raises(Timeout) as info:
        with dhaga.timeout(0.01) as t:
            dhaga.sleep(10)
    assert info.value is t.exception and t.expired


def test_timeout_block_interrupt_passes_drivers_that_rewrite_errors():
    # A driver that turns every Exception/OSError into its own error must not rewrite the
    # interruption: inside the block it is a BaseException, at the block's edge a Timeout.
    from dhaga.errors import TimeoutInterrupt

    class DriverError(Exception):
        pass

    seen = []

    def driver_query():
        try:
            dhaga.sleep(10)
        except Exception as e:  # noqa: BLE001 - what drivers do
            raise DriverError("connection socket closed") from e
        except BaseException as e:
            seen.append(e)
            raise

    with pytest.raises(Timeout) as info:
        with dhaga.timeout(0.01) as t:
            driver_query()
    assert info.value is t.exception and t.expired
    assert len(seen) == 1 and isinstance(seen[0], TimeoutInterrupt) and seen[0].timeout is t
    assert not isinstance(seen[0], Exception)


def test_timeout_block_not_overrun_raises_nothing():
    with dhaga.timeout(10) as t:
        dhaga.sleep(0)
    assert not t.expired


def test_timeout_none_never_fires():
    with dhaga.timeout(None):
        dhaga.sleep(0.01)


def test_nested_inner_fires_first_and_is_not_the_outer():
    def body():
        with dhaga.timeout(5) as outer:
            try:
                with dhaga.timeout(0.01) as inner:
                    dhaga.sleep(10)
            except Timeout as e:
                assert e is inner.exception and e is not outer.exception
                return "inner caught, outer still running", outer.expired

    assert dhaga.run(body) == ("inner caught, outer still running", False)


def test_nested_outer_fires_through_inner_untouched():
    blocks = []

    def body():
        with dhaga.timeout(0.01) as outer:
            blocks.append(outer)
            with dhaga.timeout(5) as inner:
                blocks.append(inner)
                dhaga.sleep(10)
        return "unreachable"

    d = dhaga.spawn(body)
    exc = d.exception()
    outer, inner = blocks
    assert isinstance(exc, Timeout) and exc is outer.exception
    assert "0.01" in str(exc)
    assert outer.expired and not inner.expired


def test_inner_timeout_caught_inside_does_not_leak_as_outer():
    def body():
        results = []
        with dhaga.timeout(1) as outer:
            for _ in range(3):
                try:
                    with dhaga.timeout(0.005):
                        dhaga.sleep(10)
                except Timeout as e:
                    results.append(e is outer.exception)
        return results, outer.expired

    assert dhaga.run(body) == ([False, False, False], False)


def test_timeout_with_join_timeout_inside_is_not_confused():
    def body():
        ev = Event()
        with dhaga.timeout(0.01) as t:
            # join's own timeout is longer: the block's Timeout must propagate, not turn
            # into join() returning False.
            d = dhaga.spawn(ev.wait)
            d.join(timeout=5)
        return t

    with pytest.raises(Timeout):
        dhaga.run(body)


def test_timeout_at_top_level():
    with pytest.raises(Timeout):
        with dhaga.timeout(0.01):
            Event().wait()


def test_timeout_fired_while_runnable_is_delivered_at_next_block_or_cleared():
    # A timeout that expires while the dhaga is runnable (woken) but leaves the block
    # before blocking again must not leak into later code.
    def body():
        with dhaga.timeout(0.001):
            q = Queue()
            dhaga.spawn(q.put, 1)
            q.get()
        dhaga.sleep(0.01)
        return "fine"

    assert dhaga.run(body) == "fine"


def test_negative_timeout_rejected():
    with pytest.raises(ValueError):
        dhaga.timeout(-1)


def test_timeout_is_a_timeouterror():
    try:
        with dhaga.timeout(0.001):
            dhaga.sleep(1)
    except TimeoutError:
        pass
    else:  # pragma: no cover
        pytest.fail("no TimeoutError")
