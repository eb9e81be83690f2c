"""The parking API: tickets, park, wake, interrupt, hand-over, slots and lots."""

from __future__ import annotations

import threading
from collections import deque

import pytest

import dhaga
from dhaga import Killed, Timeout
from dhaga._core import parking
from dhaga._core.parking import Lot, Slot, park, ticket, wake
from dhaga.errors import ConcurrentUseError
from dhaga.sync import Event
from dhaga.testing import settle


def parked_with(tickets: list, timeout=None, timed_out=parking.RAISE):
    """A dhaga body: take a ticket, publish it, park; return what park returned."""

    def body():
        t = ticket()
        tickets.append(t)
        return park(t, timeout, timed_out)

    return body


# ---------------------------------------------------------------------- park and wake
def test_wake_resumes_the_park_with_its_value(each_loop):
    tickets: list = []
    d = dhaga.spawn(parked_with(tickets))
    settle()
    assert parking.is_parked(tickets[0])
    assert wake(tickets[0], "value") is True
    assert d.result(timeout=5) == "value"


def test_wake_with_an_exception_raises_it_in_the_waiter():
    tickets: list = []
    d = dhaga.spawn(parked_with(tickets))
    settle()
    wake(tickets[0], None, OSError("closed"))
    with pytest.raises(OSError, match="closed"):
        d.result(timeout=5)


def test_a_second_wake_of_the_same_park_is_dropped_and_the_first_value_kept():
    tickets: list = []
    d = dhaga.spawn(parked_with(tickets))
    settle()
    assert wake(tickets[0], 1) is True
    assert wake(tickets[0], 2) is False
    assert d.result(timeout=5) == 1


def test_a_ticket_of_an_ended_park_never_wakes_a_later_one():
    tickets: list = []

    def body():
        first = ticket()
        tickets.append(first)
        assert park(first, 0.01, "timed out") == "timed out"
        second = ticket()
        tickets.append(second)
        return park(second)

    d = dhaga.spawn(body)
    settle()
    while len(tickets) < 2:
        dhaga.sleep(0.005)
    settle()
    assert wake(tickets[0], "stale") is False
    assert not d.done()
    wake(tickets[1], "fresh")
    assert d.result(timeout=5) == "fresh"


# ---------------------------------------------------------------------- timeouts
def test_park_raises_timeout_by_default():
    t = ticket()
    with pytest.raises(Timeout):
        park(t, 0.01)


def test_park_returns_the_callers_timed_out_value_instead_when_given():
    t = ticket()
    assert park(t, 0.01, timed_out=False) is False


def test_a_wake_racing_the_timeout_wins_when_it_comes_first():
    tickets: list = []
    d = dhaga.spawn(parked_with(tickets, timeout=60, timed_out="timed out"))
    settle()
    wake(tickets[0], "woken")
    assert d.result(timeout=5) == "woken"


# ---------------------------------------------------------------------- interrupts
def test_interrupt_raises_in_a_parked_waiter_and_its_ticket_goes_stale():
    tickets: list = []
    d = dhaga.spawn(parked_with(tickets))
    settle()
    assert parking.interrupt(d, Killed("stop")) is True
    with pytest.raises(Killed):
        d.result(timeout=5)
    assert wake(tickets[0], "late") is False


def test_an_interrupt_after_a_wake_keeps_the_value_and_arrives_at_the_next_park():
    tickets: list = []
    seen: list = []

    def body():
        t = ticket()
        tickets.append(t)
        seen.append(park(t))  # woken with a value, then interrupted before it runs
        park(ticket())  # the interrupt arrives here

    d = dhaga.spawn(body)
    settle()
    wake(tickets[0], "item")
    parking.interrupt(d, Killed("after"))
    with pytest.raises(Killed):
        d.result(timeout=5)
    assert seen == ["item"]


def test_discard_interrupt_drops_an_undelivered_interrupt():
    exc = Killed("never")
    ready = Event()

    def body():
        ready.wait()
        return "ran"

    d = dhaga.spawn(body)
    settle()
    ready.set()  # d is woken (runnable) but has not run: an interrupt now waits for it
    assert parking.interrupt(d, exc) is True
    parking.discard_interrupt(d, exc)
    assert d.result(timeout=5) == "ran"


def test_interrupting_a_dhaga_that_never_started_finishes_it():
    d = dhaga.spawn(lambda: "ran")
    assert parking.interrupt(d, Killed("before")) is False
    assert d.killed()


# ---------------------------------------------------------------------- across threads
def test_a_wake_from_another_thread_reaches_the_park_even_when_sent_before_it():
    t = ticket()
    sent = threading.Event()

    def other():
        wake(t, "from afar")  # before the main thread parks: delivered through its loop
        sent.set()

    th = threading.Thread(target=other)
    th.start()
    sent.wait(5)
    assert park(t, 10) == "from afar"
    th.join(5)


def test_a_dhaga_of_another_thread_is_woken_and_interrupted_from_here():
    tickets: list = []
    out: dict = {}

    def body():
        first = ticket()
        tickets.append(first)
        out["first"] = park(first)
        second = ticket()
        tickets.append(second)
        park(second)  # interrupted from the main thread

    def thread_main():
        d = out["d"] = dhaga.spawn(body)
        out["exc"] = d.exception(timeout=10)

    th = threading.Thread(target=thread_main)
    th.start()
    while len(tickets) < 1 or not parking.is_parked(tickets[0]):
        dhaga.sleep(0.001)
    assert wake(tickets[0], "x") is True  # sent on to the other thread's loop
    while len(tickets) < 2 or not parking.is_parked(tickets[1]):
        dhaga.sleep(0.001)
    assert parking.interrupt(out["d"], Killed("from here")) is True
    th.join(10)
    assert out["first"] == "x" and isinstance(out["exc"], Killed)


def test_hand_over_refuses_a_waiter_of_another_thread():
    result: list = []

    def thread_main():
        t = ticket()
        result.append(t)
        result.append(park(t, 10))

    th = threading.Thread(target=thread_main)
    th.start()
    while not result:
        dhaga.sleep(0.001)
    assert parking.hand_over(result[0], "v") is None  # not attempted: the caller keeps it
    wake(result[0], "w")
    th.join(10)
    assert result[1] == "w"


# ---------------------------------------------------------------------- queued tickets
def test_park_queued_and_unqueue():
    tickets: deque = deque()
    mutex = threading.Lock()

    def waiter():
        mutex.acquire()
        return park_queued_value(tickets, mutex)

    def park_queued_value(tickets, mutex):
        got = parking.park_queued(tickets, mutex, 0.02, "timed out")
        if got == "timed out":
            assert parking.unqueue(tickets, mutex) is True
        return got

    d1 = dhaga.spawn(waiter)
    d2 = dhaga.spawn(waiter)
    settle()
    assert len(tickets) == 2 and not mutex.locked()
    with mutex:
        first = tickets.popleft()
    wake(first, "served")
    assert d1.result(timeout=5) == "served"
    assert d2.result(timeout=5) == "timed out"
    assert not tickets


# ---------------------------------------------------------------------- slot and lot
def test_slot_holds_one_waiter_and_wake_empties_it():
    slot = Slot()
    d = dhaga.spawn(slot.park)
    settle()
    assert slot.ticket is not None
    with pytest.raises(ConcurrentUseError):
        dhaga.spawn(slot.park).result(timeout=5)
    assert slot.wake("v") is True
    assert slot.ticket is None and slot.wake("again") is False
    assert d.result(timeout=5) == "v"


def test_slot_is_emptied_by_a_timeout_and_by_a_kill():
    slot = Slot()
    with pytest.raises(Timeout):
        slot.park(0.01)
    assert slot.ticket is None
    d = dhaga.spawn(slot.park)
    settle()
    d.kill()
    assert slot.ticket is None


def test_lot_wakes_first_come_first_served_and_forgets_leavers():
    lot, order = Lot(), []

    def waiter(i):
        order.append((i, lot.park()))

    ds = [dhaga.spawn(waiter, i) for i in range(4)]
    settle()
    ds[1].kill()
    assert len(lot) == 3
    assert lot.wake_one("a") is True
    settle()
    assert lot.wake_all("b") == 2
    dhaga.joinall([ds[0], ds[2], ds[3]])
    assert order == [(0, "a"), (2, "b"), (3, "b")]
    assert lot.wake_one() is False


def test_lot_timeout_and_a_wake_at_the_same_moment_counts_as_woken():
    lot = Lot()
    assert lot.park(0.01, timed_out="timed out") == "timed out"
    assert len(lot) == 0


def test_lot_across_threads():
    lot = Lot()
    got: list = []
    th = threading.Thread(target=lambda: got.append(lot.park(10)))
    th.start()
    while not len(lot):
        dhaga.sleep(0.001)
    lot.wake_one("across")
    th.join(10)
    assert got == ["across"]
