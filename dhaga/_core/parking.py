"""The parking API: the one door through which anything outside the core waits and wakes.

How this works
--------------
A waiter (the running dhaga, or the thread's top level when no dhaga runs) that must wait takes
a *ticket* with `ticket()`, puts it wherever the wake-up will come from (a queue's getters, a
socket's reader slot, an RPC call's pending table), and calls `park(ticket, timeout)`. Whoever
has the value calls `wake(ticket, value)`, from any thread; `park` returns that value. A ticket
names one park: a wake-up that arrives after that park ended (it timed out, was killed, or was
already woken) is dropped, so a late or duplicate wake never resumes a later wait.

A park ends in one of three ways: woken (its value), timed out (`park` raises `Timeout`, or
returns the ``timed_out`` value the caller chose), or interrupted (`interrupt(waiter, exc)`:
kills and ``dhaga.timeout()`` blocks raise their exception at the waiter's blocking point). A
waiter woken with a value always receives it: an interrupt that arrives later is delivered at
its next blocking point, so a handed-over item or permit is never lost. Whoever parks removes
its ticket where it left it (in a ``finally``) unless the waker took it.

`Slot` holds one parked waiter (an mq session's reader or writer, an RPC connection's writer; a
file descriptor's watcher keeps a ticket per direction the same way); `Lot` holds many, woken
in FIFO order and safe across threads (trio's ``ParkingLot``). `park_queued` and `hand_over`
are the contended paths of locks and queues, with the kernel's common case written out.

Wake-before-park: on the waiter's own thread nothing else runs between taking a ticket and
parking (there is no switch in between), so no wake can come early from there; a wake from
another thread is delivered through the waiter's loop, which runs only once the waiter has
parked (or handed its thread to the next dhaga), so it finds the park it names.

This module must not know about any primitive, socket or protocol.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from ..errors import ConcurrentUseError, Timeout
from .kernel import Scheduler
from .polling import register_direct
from .states import PARKED, RUNNING, TIMED_OUT, _Waiter
from .threads import _local, get_scheduler

__all__ = [
    "Ticket", "ticket", "current_waiter", "park", "park_queued", "unqueue", "remove", "wake",
    "wake_soon", "wake_now", "hand_over", "interrupt", "discard_interrupt", "is_parked", "sleep",
    "Slot", "Lot", "ReadySlots", "RAISE", "Waiting",
]  # fmt: skip

Ticket = tuple  # (waiter, gen): one park of one waiter
_get_ident = threading.get_ident


class _Raise:
    __slots__ = ()

    def __repr__(self) -> str:
        return "RAISE"


#: `park`'s default ``timed_out``: raise `Timeout` when the timeout expires.
RAISE: Any = _Raise()


def current_waiter(may_block: bool = True) -> _Waiter:
    """The caller's waiter: its dhaga, or the thread's top level.

    Args:
        may_block: the caller means to park: refuse a coroutine or callback on the loop.

    Raises:
        BlockingError: ``may_block`` and the caller is a coroutine or callback on the loop.
    """
    sched = getattr(_local, "sched", None)
    if sched is not None:
        d = sched._current
        if d is not None:
            return d
    sched = get_scheduler()
    return sched.waiter() if may_block else sched._top


def ticket() -> Ticket:
    """A ticket for the caller's next park.

    Take it right before publishing it and parking: a park in between (a lock, even one a
    monkey-patched library takes) ends the park it names, and wakes for it are then dropped.

    Raises:
        BlockingError: the caller is a coroutine or callback running on the event loop.
    """
    try:
        d = _local.sched._current
    except AttributeError:  # no scheduler on this thread yet
        d = None
    if d is not None:
        return (d, d._gen)
    waiter = get_scheduler().waiter()
    return (waiter, waiter._gen)


def park(t: Ticket, timeout: float | None = None, timed_out: Any = RAISE, on: Any = None) -> Any:
    """Suspend the caller (the ticket's waiter) until its ticket is woken; return the value.

    Args:
        t: the caller's ticket, taken with `ticket()` and registered where the wake comes from.
        timeout: seconds at most; None waits forever.
        timed_out: returned when ``timeout`` expires; by default `Timeout` is raised instead.
        on: what the caller waits on (a lock, a queue, an fd...), for ``dhaga.dump()`` and
            `Deadlock`; its ``repr`` is shown, and only when asked for.

    Raises:
        Timeout: ``timeout`` expired and ``timed_out`` was not given.
        BaseException: the exception the ticket was woken with, or an interrupt (a kill, a
            ``dhaga.timeout()`` block's).
    """
    waiter = t[0]
    sched = waiter._sched
    if timeout is None and waiter is sched._current:
        return _park_dhaga(sched, waiter, on)
    value = sched.park_timed(waiter, timeout, on)
    if value is TIMED_OUT:
        if timed_out is RAISE:
            raise Timeout(f"timed out after {timeout}s", timeout)
        return timed_out
    return value


def _park_dhaga(sched: Scheduler, waiter: Any, on: Any) -> Any:
    """The running dhaga parks without a timeout: the hot path of every wait.

    `Scheduler.park_timed` without a timeout, with `Scheduler._switch_next`'s common case (the next dhaga of the batch
    was woken, not new) written out, so that a hand-off costs one Python call and the switch.
    """
    exc = waiter._pending_exc
    if exc is not None:
        waiter._pending_exc = None
        raise exc
    waiter._state = PARKED
    waiter._on = on
    waiter._since = sched._batch_at
    runq = sched._runq
    if sched._batch > 0 and runq and runq[0]._state is RUNNING:
        sched._batch -= 1
        nxt = runq.popleft()
        sched._current = nxt
        gr = nxt._gr
        nxt = runq = None  # a suspended frame must not keep other dhagas alive
        gr.switch()
    else:
        runq = None
        sched._switch_next()
    waiter._gen += 1
    exc = waiter._resume_exc
    if exc is not None:
        waiter._resume_exc = None
        raise exc
    value = waiter._resume_value
    waiter._resume_value = None
    return value


def park_queued(
    tickets: Any, mutex: Any, timeout: float | None = None, timed_out: Any = RAISE, on: Any = None
) -> Any:
    """Queue the caller's ticket at the end of ``tickets``, release ``mutex``, and `park`.

    The caller holds ``mutex`` (which guards ``tickets``); this releases it, also on error. If
    the park ends without a waker taking the ticket (a timeout, an interrupt), the caller takes
    it out with `unqueue`. `BlockingError` (the caller is a coroutine or callback on the loop)
    is raised before anything is queued. One call where `ticket` and `park` would be two: the contended paths
    of locks and queues use it.
    """
    try:
        sched = _local.sched
        waiter = sched._current
    except AttributeError:  # no scheduler on this thread yet
        waiter = None
    if waiter is None or timeout is not None:
        return _park_queued_slow(tickets, mutex, timeout, timed_out, on)
    try:
        tickets.append((waiter, waiter._gen))
    finally:
        mutex.release()
    # A dhaga waiting without a timeout, the contended hot path: _park_dhaga, written out.
    exc = waiter._pending_exc
    if exc is not None:
        waiter._pending_exc = None
        raise exc
    waiter._state = PARKED
    waiter._on = on
    waiter._since = sched._batch_at
    runq = sched._runq
    if sched._batch > 0 and runq and runq[0]._state is RUNNING:
        sched._batch -= 1
        nxt = runq.popleft()
        sched._current = nxt
        gr = nxt._gr
        nxt = runq = None  # a suspended frame must not keep other dhagas alive
        gr.switch()
    else:
        runq = None
        sched._switch_next()
    waiter._gen += 1
    exc = waiter._resume_exc
    if exc is not None:
        waiter._resume_exc = None
        raise exc
    value = waiter._resume_value
    waiter._resume_value = None
    return value


def _park_queued_slow(
    tickets: Any, mutex: Any, timeout: float | None, timed_out: Any, on: Any
) -> Any:
    """`park_queued` for the top level, or with a timeout."""
    try:
        waiter = get_scheduler().waiter()
        tickets.append((waiter, waiter._gen))
    finally:
        mutex.release()
    value = waiter._sched.park_timed(waiter, timeout, on)
    if value is TIMED_OUT:
        if timed_out is RAISE:
            raise Timeout(f"timed out after {timeout}s", timeout)
        return timed_out
    return value


def unqueue(tickets: Any, mutex: Any) -> bool:
    """After `park_queued` ended by a timeout or interrupt: take the caller's ticket out.

    Returns:
        True if it was still queued; False if a waker took it (the wake-up is the caller's).
    """
    me = current_waiter(may_block=False)
    with mutex:
        for t in tickets:
            if t[0] is me:
                tickets.remove(t)
                return True
    return False


def wake(t: Ticket, value: Any = None, exc: BaseException | None = None) -> bool:
    """Wake the park ``t`` names with ``value`` (or ``exc``), from any thread.

    Returns:
        on the waiter's own thread, whether it was woken (False: that park has ended or the
        waiter was woken already); from another thread, True (the wake is sent on, and dropped
        there if that park has ended).
    """
    waiter, gen = t
    sched = waiter._sched
    if sched._thread_id == _get_ident():
        # Scheduler._unpark, written out for its common case: a parked dhaga of this thread.
        if waiter._state is not PARKED or gen != waiter._gen:
            return False
        if waiter is sched._top:
            return sched._unpark(waiter, value, exc, gen)
        waiter._state = RUNNING
        waiter._resume_value = value
        waiter._resume_exc = exc
        sched._runq.append(waiter)
        if not sched._drain_pending:
            sched._drain_pending = True
            sched._call_soon(sched._drain)
        return True
    sched.loop.call_soon_threadsafe(sched._unpark, waiter, value, exc, gen)
    return True


def wake_soon(t: Ticket, value: Any = None, exc: BaseException | None = None) -> None:
    """Like `wake`, but always through the waiter's loop, even from its own thread.

    For a completion callback that may run at once, in the waiter's thread, before it parks.
    """
    waiter = t[0]
    sched = waiter._sched
    sched.loop.call_soon_threadsafe(sched._unpark, waiter, value, exc, t[1])


def hand_over(t: Ticket, value: Any) -> bool | None:
    """Wake the park ``t`` names with ``value`` if its waiter is of this thread.

    For a value that must not be lost: the caller keeps it unless this returns True.

    Returns:
        True if handed over; False if that park has ended or was woken already (the waiter
        is of this thread); None, doing nothing, if the waiter is of another thread.
    """
    waiter, gen = t
    sched = waiter._sched
    if sched._thread_id != _get_ident():
        return None
    if waiter._state is not PARKED or gen != waiter._gen:
        return False
    if waiter is sched._top:
        return sched._unpark(waiter, value, None, gen)
    # Scheduler._unpark, written out: the hot path of a hand-off. (``_resume_exc`` is None:
    # every park that ends takes it.)
    waiter._state = RUNNING
    waiter._resume_value = value
    sched._runq.append(waiter)
    if not sched._drain_pending:
        sched._drain_pending = True
        sched._call_soon(sched._drain)
    return True


def sleep(seconds: float = 0) -> None:
    """Suspend the caller for ``seconds``; ``sleep(0)`` lets every other runnable dhaga run once."""
    try:
        sched = _local.sched
        d = sched._current
    except AttributeError:
        sched = d = None
    if d is None:
        sched = get_scheduler()
    elif seconds <= 0 and sched._batch > 0 and d._pending_exc is None:
        # A dhaga yielding within a batch: to the back of the run queue, and on with the
        # next runnable one; with none, it goes on at once. Each yield uses up a slot
        # of the batch, so a loop of sleep(0) alone still lets the loop poll.
        sched._batch -= 1
        runq = sched._runq
        if not runq:  # nobody else is runnable: go on at once
            return
        d._resume_value = d._resume_exc = None
        runq.append(d)
        sched._batch += 1  # _switch_next counts this switch
        sched._switch_next()
        d._take_resume()
        return
    waiter = sched.waiter()
    exc = waiter._pending_exc
    if exc is not None:
        waiter._pending_exc = None
        raise exc
    waiter._state = PARKED
    waiter._on = _SLEEP
    waiter._since = sched._batch_at
    if seconds <= 0:
        if waiter is sched._top:
            if sched._runq and not sched._drain_pending:  # others run first, then we return
                sched._drain_pending = True
                sched._call_soon(sched._drain)
            sched._call_soon(sched._unpark, waiter)
        else:
            sched._unpark(waiter)
        sched._suspend(waiter)
        waiter._take_resume()
        return
    handle = sched._call_later(seconds, sched._unpark, waiter)
    sched._suspend(waiter)
    if waiter._resume_exc is not None:
        handle.cancel()
    waiter._take_resume()


def wake_now(t: Ticket) -> bool:
    """From an I/O readiness callback of the waiter's thread: wake it to run before the next poll.

    The woken dhaga consumes what made it ready before the loop polls again (a level-triggered
    poll would otherwise report it a second time), and every dhaga one poll makes ready runs in
    one batch: on asyncio's selector loops, a drain the scheduler queues behind that poll's
    callbacks (`Scheduler._after_poll`); on uvloop, the drain a wake queues as a ready
    callback, which libuv runs before it polls again. Returns False if that park has ended or
    the waiter was woken already.
    """
    waiter = t[0]
    if waiter._gen != t[1] or waiter._state is not PARKED:
        return False
    sched = waiter._sched
    if sched._in_poll and waiter is not sched._top:
        # Scheduler._unpark, written out for the poll's drain: the hot path of every I/O wake.
        waiter._state = RUNNING  # (_resume_exc is None: every park that ends takes it)
        waiter._resume_value = None
        sched._runq.append(waiter)
        sched._drain_pending = True  # the poll's drain, queued already, runs it
        return True
    return sched._unpark(waiter)


def interrupt(waiter: _Waiter, exc: BaseException) -> bool:
    """Raise ``exc`` in ``waiter`` at its blocking point (kills and timeouts); any thread.

    See `Scheduler.interrupt`: returns False when a dhaga had finished or never started.
    """
    return waiter._sched.interrupt(waiter, exc)


def discard_interrupt(waiter: _Waiter, exc: BaseException) -> None:
    """Drop ``exc`` if it still waits for ``waiter``'s next blocking point (waiter's thread)."""
    if waiter._pending_exc is exc:
        waiter._pending_exc = None


def remove(mutex: Any, tickets: Any, t: Ticket) -> bool:
    """Take ``t`` out of ``tickets`` under ``mutex``; False if a waker took it already."""
    with mutex:
        try:
            tickets.remove(t)
        except ValueError:
            return False
    return True


def is_parked(t: Ticket) -> bool:
    """True while the park ``t`` names is still waiting (not woken, timed out or interrupted)."""
    waiter = t[0]
    return waiter._state is PARKED and waiter._gen == t[1]


class Slot:
    """Room for one parked waiter, and its wake-up: a session's writer, a connection's writer.

    Waking takes the ticket out, so a second wake before the waiter runs costs nothing.
    """

    __slots__ = ("ticket",)

    def __init__(self) -> None:
        self.ticket: Ticket | None = None

    def __repr__(self) -> str:
        return f"<Slot {'empty' if self.ticket is None else self.ticket[0]!r}>"

    def park(self, timeout: float | None = None, timed_out: Any = RAISE, on: Any = None) -> Any:
        """Park the caller in the slot until `wake`; see `park`.

        Raises:
            ConcurrentUseError: another waiter is parked in the slot.
        """
        if self.ticket is not None:
            raise ConcurrentUseError("another dhaga is already waiting here")
        t = self.ticket = ticket()
        try:
            return park(t, timeout, timed_out, on)
        finally:
            if self.ticket is t:
                self.ticket = None

    def wake(self, value: Any = None, exc: BaseException | None = None) -> bool:
        """Wake the waiter in the slot and empty the slot; False if none was there."""
        t = self.ticket
        if t is None:
            return False
        self.ticket = None
        return wake(t, value, exc)

    def wake_now(self) -> bool:
        """Wake the parked waiter and run it now (from a loop callback); see `wake_now`."""
        t = self.ticket
        return t is not None and wake_now(t)


class ReadySlots:
    """A reader slot and a writer slot woken by readiness callbacks: a descriptor's watcher.

    The base of `dhaga._io.fdwait`'s watcher, which adds the loop registration: this part
    parks a dhaga in a slot and wakes it from the loop's readiness callback, with `park` and
    `wake_now` written out for the commonest wait there is (a connection waiting for its next
    request). ``reader``/``writer`` hold the parked waiter's ticket, or None.
    """

    __slots__ = ("sched", "reader", "writer")

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.reader: Ticket | None = None
        self.writer: Ticket | None = None

    def park_reader(self, on: Any) -> Any:
        """Park the running dhaga of this scheduler in the empty reader slot, no timeout.

        The caller checked that it is a dhaga of ``sched``, on its thread, and that the slot
        is empty.
        """
        sched = self.sched
        d = sched._current
        self.reader = (d, d._gen)
        try:
            return _park_dhaga(sched, d, on)
        finally:
            self.reader = None

    def park_reader_timed(self, timeout: float, on: Any) -> bool:
        """`park_reader` with a timeout: False if it expired (the reader's timed read)."""
        sched = self.sched
        d = sched._current
        self.reader = (d, d._gen)
        try:
            return sched.park_timed(d, timeout, on) is not TIMED_OUT
        finally:
            self.reader = None

    # The loop's readiness callbacks: `wake_now`, written out (the hot path of every I/O wake).
    def on_readable(self) -> None:
        """The descriptor is readable: wake the parked reader; with none, `drop_reader`."""
        t = self.reader
        if t is None:
            self.drop_reader()
            return
        waiter = t[0]
        if waiter._gen != t[1] or waiter._state is not PARKED:
            return  # woken already (a stale event)
        sched = waiter._sched
        if waiter is not sched._top:
            waiter._state = RUNNING  # (_resume_exc is None: every park that ends takes it)
            waiter._resume_value = None
            sched._runq.append(waiter)
            if not sched._drain_pending:
                sched._drain_pending = True
                if not sched._in_poll:  # else the poll's drain, queued already, runs it
                    sched._call_soon(sched._drain)
        else:
            sched._unpark(waiter)

    def on_writable(self) -> None:
        """The descriptor is writable: wake the parked writer; with none, `drop_writer`."""
        t = self.writer
        if t is None:
            self.drop_writer()
        else:
            wake_now(t)

    def drop_reader(self) -> None:
        """Readable with nobody waiting: the subclass drops its registration."""
        raise NotImplementedError

    def drop_writer(self) -> None:
        """Writable with nobody waiting: the subclass drops its registration."""
        raise NotImplementedError


# They only wake a parked dhaga or drop a registration: the scheduler may call them straight
# from a poll's events (see `Scheduler._after_poll`).
register_direct(ReadySlots.on_readable, wakes_reader=True)  # written out there
register_direct(ReadySlots.on_writable)


class Lot:
    """Many parked waiters, woken first come, first served; safe across threads."""

    __slots__ = ("_tickets", "_mutex")

    def __init__(self) -> None:
        self._tickets: deque[Ticket] = deque()
        self._mutex = threading.Lock()

    def __len__(self) -> int:
        return len(self._tickets)

    def __repr__(self) -> str:
        return f"<Lot waiters={len(self._tickets)}>"

    def park(self, timeout: float | None = None, timed_out: Any = RAISE, on: Any = None) -> Any:
        """Park the caller until `wake_one`/`wake_all` reaches it; see `park`.

        A waiter woken as its timeout expires counts as woken (it returns the value).
        """
        t = ticket()
        mutex = self._mutex
        with mutex:
            self._tickets.append(t)
        try:
            value = park(t, timeout, _TIMED_OUT, self if on is None else on)
        except BaseException:
            self._remove(t)
            raise
        if value is _TIMED_OUT:
            if self._remove(t):
                if timed_out is RAISE:
                    raise Timeout(f"timed out after {timeout}s", timeout)
                return timed_out
            value = None  # woken as the timeout expired: the wake-up wins
        return value

    def _remove(self, t: Ticket) -> bool:
        with self._mutex:
            try:
                self._tickets.remove(t)
            except ValueError:
                return False
        return True

    def wake_one(self, value: Any = None) -> bool:
        """Wake the longest waiter; False if none waits."""
        with self._mutex:
            if not self._tickets:
                return False
            t = self._tickets.popleft()
        wake(t, value)
        return True

    def wake_all(self, value: Any = None) -> int:
        """Wake every waiter; return how many."""
        with self._mutex:
            tickets, self._tickets = self._tickets, deque()
        for t in tickets:
            wake(t, value)
        return len(tickets)


_TIMED_OUT = object()


class Waiting:
    """A readable ``on=`` for waits with no object of their own: ``Waiting("joinall", dhagas)``.

    Args:
        what: the operation, shown as its name.
        obj: what it is applied to; its ``repr`` is taken only when a dump asks.
    """

    __slots__ = ("what", "obj")

    def __init__(self, what: str, obj: Any = None) -> None:
        self.what = what
        self.obj = obj

    def __repr__(self) -> str:
        obj = self.obj
        if isinstance(obj, (list, tuple)) and len(obj) > 4:
            shown = ", ".join(repr(o) for o in obj[:4]) + f", ... ({len(obj)} in all)"
        elif isinstance(obj, (list, tuple)):
            shown = ", ".join(repr(o) for o in obj)
        elif obj is None:
            shown = ""
        else:
            shown = getattr(obj, "__qualname__", None) or repr(obj)
        return f"{self.what}({shown})"


class _Sleep:
    __slots__ = ()

    def __repr__(self) -> str:
        return "sleep()"


_SLEEP = _Sleep()  # what a sleeping waiter parked on
