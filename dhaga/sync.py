"""Synchronisation primitives and queues for dhagas, with `threading`'s and `queue`'s names.

How this works
--------------
Every primitive keeps its waiters as *tickets* ``(waiter, gen)`` in FIFO order and guards them
with a small real mutex, so the same object also works between dhagas of different OS threads
and plain threads (each side parks on its own scheduler; a wake-up crosses threads through the
loop's thread-safe callback, addressed to one park by ``gen``).

Nothing is lost when a waiter leaves early (killed or timed out):
- `Lock` and `Semaphore` *hand over* a permit to the first waiter on release. A waiter that
  finds, as it leaves, that its ticket was already taken owns a permit: on a timeout it keeps it
  (the acquire succeeded after all); when killed it releases it to the next waiter.
- `Queue` *notifies* the first getter (or putter) and reserves an item (or a slot) for it: a
  newcomer cannot take what is reserved. A notified getter (putter) that times out takes its
  item (its slot); one that is killed passes its reservation on. `Condition` passes a
  notification on the same way.
A waiter woken with a value always receives it (a later kill is delivered at its next blocking
point), so handed-over permits and items cannot vanish between the wake-up and the waiter.

`Lock` takes no mutex when uncontended: its state is a real non-blocking `_thread.lock`, which
stays held while the lock is handed from one holder to the next. An acquirer that fails retries
under the mutex before queueing; a releaser checks ``mutex.locked()`` *before* the waiters, so
an acquirer between its retry and its queueing is always seen (see `Lock.release`).

This module knows the scheduler's parking rules; it knows nothing about I/O.
"""

from __future__ import annotations

import heapq
import queue as _stdqueue
import threading
import time
from collections import deque
from typing import Any, Callable, Generic, TypeVar

from .errors import Timeout
from .handle import PARKED, RUNNING
from .scheduler import TIMED_OUT, Scheduler, _local, _Waiter, current, get_scheduler

__all__ = [
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Queue",
    "LifoQueue",
    "PriorityQueue",
    "SimpleQueue",
    "Empty",
    "Full",
    "ShutDown",
]

Empty = _stdqueue.Empty
Full = _stdqueue.Full

if hasattr(_stdqueue, "ShutDown"):  # Python 3.13+
    ShutDown = _stdqueue.ShutDown
else:
    class ShutDown(Exception):  # type: ignore[no-redef]
        """Raised by a `Queue` that was shut down (``queue.ShutDown`` from Python 3.13)."""


T = TypeVar("T")
_Ticket = tuple  # (waiter, gen)
_get_ident = threading.get_ident
_BLOCK = object()  # "no ticket to wake: go and wait" in the queue fast paths


def _me() -> tuple[Scheduler, _Waiter]:
    """The caller's scheduler and waiter (its dhaga, or the thread's top level)."""
    sched = getattr(_local, "sched", None)  # `current()`, inlined: this is the hot path
    if sched is not None:
        d = sched._current
        if d is not None:
            return sched, d
    sched = get_scheduler()
    return sched, sched.waiter()


def _wake(ticket: _Ticket, value: Any = True) -> None:
    """Wake the park a ticket was taken for, from any thread (`scheduler.wake`, inlined)."""
    waiter, gen = ticket
    sched = waiter._sched
    if sched._thread_id == _get_ident():
        sched._unpark(waiter, value, None, gen)
    else:
        sched.loop.call_soon_threadsafe(sched._unpark, waiter, value, None, gen)


def _lock_timeout(blocking: bool, timeout: float | None) -> float | None:
    """Validate ``acquire(blocking, timeout)`` as `threading.Lock` does; -1 means forever."""
    if timeout is None or timeout == -1:
        return None
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    return timeout


def _remove(mutex: Any, waiters: deque, ticket: _Ticket) -> bool:
    """Take ``ticket`` out of ``waiters``; False if someone already took it (it was served)."""
    with mutex:
        try:
            waiters.remove(ticket)
        except ValueError:
            return False
    return True


class Event:
    """A flag that dhagas (and threads) can wait for; `threading.Event`'s interface."""

    __slots__ = ("_flag", "_waiters", "_mutex", "__weakref__")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: dict[_Ticket, None] = {}
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"<Event {'set' if self._flag else 'unset'} waiters={len(self._waiters)}>"

    def is_set(self) -> bool:
        """True when the flag is set."""
        return self._flag

    isSet = is_set  # noqa: N815 - threading's old name

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        mutex = self._mutex
        mutex.acquire()
        try:
            self._flag = True
            waiters, self._waiters = self._waiters, {}
        finally:
            mutex.release()
        for ticket in waiters:
            _wake(ticket)

    def clear(self) -> None:
        """Reset the flag; later `wait` calls block again."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set.

        Returns:
            the flag: True, or False if ``timeout`` expired first.
        """
        if self._flag:
            return True
        sched, waiter = _me()
        ticket = (waiter, waiter._gen)
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._flag:
                return True
            self._waiters[ticket] = None
        finally:
            mutex.release()
        try:
            if sched.park_timed(waiter, timeout) is not TIMED_OUT:
                return True  # set() took our ticket
        except BaseException:
            mutex = self._mutex
            mutex.acquire()
            try:
                self._waiters.pop(ticket, None)
            finally:
                mutex.release()
            raise
        mutex = self._mutex
        mutex.acquire()
        try:
            self._waiters.pop(ticket, None)
        finally:
            mutex.release()
        return self._flag


class Lock:
    """A mutual-exclusion lock with `threading.Lock`'s interface; waiters served FIFO.

    Any dhaga or thread may release it (as with `threading.Lock`). Across threads, a newcomer
    arriving at the very instant of a release may take the lock ahead of the queued waiters;
    queued waiters are always served in order.
    """

    __slots__ = ("_held", "_waiters", "_mutex", "__weakref__")

    def __init__(self) -> None:
        self._held = threading.Lock()  # acquired <=> this lock is held (or being handed over)
        self._waiters: deque[_Ticket] = deque()
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        state = "locked" if self._held.locked() else "unlocked"
        return f"<{type(self).__name__} {state} waiters={len(self._waiters)}>"

    def locked(self) -> bool:
        """True when the lock is held."""
        return self._held.locked()

    def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        """Take the lock, waiting for it if needed.

        Args:
            blocking: wait if it is held; False returns at once.
            timeout: seconds to wait at most; -1 (or None) waits forever.

        Returns:
            True once acquired; False if non-blocking and held, or on timeout.
        """
        timeout = None if timeout == -1 else _lock_timeout(blocking, timeout)
        if self._held.acquire(False):
            return True
        return self._acquire_slow(blocking, timeout)

    def __enter__(self) -> bool:
        if self._held.acquire(False):
            return True
        return self._acquire_slow(True, None)

    def _acquire_slow(self, blocking: bool, timeout: float | None) -> bool:
        """Queue up and wait: the caller tried to take the lock once already."""
        held = self._held
        if not blocking:
            return False
        sched = getattr(_local, "sched", None)  # `_me()`, inlined: the contended hot path
        waiter = sched._current if sched is not None else None
        if waiter is None:
            sched, waiter = _me()
        ticket = (waiter, waiter._gen)
        mutex = self._mutex
        mutex.acquire()
        try:
            if held.acquire(False):  # released since we looked: never queue for a free lock
                return True
            self._waiters.append(ticket)
        finally:
            mutex.release()
        try:
            if timeout is None:
                sched.park(waiter)  # a dhaga's untimed park is park()'s inlined fast path
                return True  # handed over to us
            if sched.park_timed(waiter, timeout) is not TIMED_OUT:
                return True  # handed over to us
        except BaseException:
            if not _remove(self._mutex, self._waiters, ticket):
                self.release()  # handed over as we were killed: pass it on
            raise
        # Timed out; if it was handed over meanwhile, the acquire succeeded after all.
        return not _remove(self._mutex, self._waiters, ticket)

    def release(self, *_exc_info: Any) -> None:
        """Release the lock, handing it to the longest waiter if there is one.

        Raises:
            RuntimeError: the lock is not held.
        """
        try:
            self._held.release()
        except RuntimeError:
            raise RuntimeError("release unlocked lock") from None
        # An acquirer holds the mutex from its retry until it has queued: look at the mutex
        # first, then at the queue, and one of the two shows it.
        if not self._mutex.locked() and not self._waiters:
            return
        mutex = self._mutex
        mutex.acquire()
        try:
            if not self._waiters or not self._held.acquire(False):
                return  # nobody waits, or a newcomer took it (its release will hand over)
            waiter, gen = self._waiters.popleft()
        finally:
            mutex.release()
        sched = waiter._sched  # _wake(), inlined: this is the contended hot path
        if sched._thread_id == _get_ident():
            if waiter._state is PARKED and gen == waiter._gen and waiter is not sched._top:
                waiter._state = RUNNING  # Scheduler._unpark, inlined
                waiter._resume_value = True
                waiter._resume_exc = None
                sched._runq.append(waiter)
                if not sched._drain_pending:
                    sched._drain_pending = True
                    sched._call_soon(sched._drain)
            else:
                sched._unpark(waiter, True, None, gen)
        else:
            sched.loop.call_soon_threadsafe(sched._unpark, waiter, True, None, gen)

    __exit__ = release  # one call fewer per ``with lock:`` than a wrapper

    # For Condition.
    def _is_owned(self) -> bool:
        return self._held.locked()

    def _release_save(self) -> None:
        self.release()

    def _acquire_restore(self, _state: Any) -> None:
        self.acquire()


def _owner() -> _Waiter:
    """The identity that owns an `RLock`: the current dhaga, or the thread's top level."""
    d = current()
    return d if d is not None else get_scheduler()._top


class RLock:
    """A reentrant lock owned by a dhaga (or a thread's top level); `threading.RLock`'s interface.

    Ownership is per dhaga, as it is per thread for `threading.RLock`: two dhagas of one
    thread exclude each other.
    """

    __slots__ = ("_lock", "_owner", "_count", "__weakref__")

    def __init__(self) -> None:
        self._lock = Lock()
        self._owner: _Waiter | None = None
        self._count = 0

    def __repr__(self) -> str:
        return f"<RLock owner={self._owner!r} count={self._count}>"

    def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        """Take the lock (again, if the caller owns it already); see `Lock.acquire`."""
        me = _owner()
        if self._owner is me:
            self._count += 1
            return True
        if not self._lock.acquire(blocking, timeout):
            return False
        self._owner = me
        self._count = 1
        return True

    __enter__ = acquire

    def release(self) -> None:
        """Undo one `acquire`; the last one releases the lock.

        Raises:
            RuntimeError: the caller does not own the lock.
        """
        if self._owner is not _owner():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            self._lock.release()

    def __exit__(self, t: Any, v: Any, tb: Any) -> None:
        self.release()

    def locked(self) -> bool:
        """True when some dhaga or thread owns the lock."""
        return self._lock.locked()

    def _is_owned(self) -> bool:
        return self._owner is _owner()

    def _release_save(self) -> tuple[int, _Waiter | None]:
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._lock.release()
        return state

    def _acquire_restore(self, state: tuple[int, _Waiter | None]) -> None:
        self._lock.acquire()
        self._count, self._owner = state


class Semaphore:
    """A counter of permits; `threading.Semaphore`'s interface, FIFO, hand-over on release."""

    __slots__ = ("_value", "_waiters", "_mutex", "__weakref__")

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value  # free permits; while anyone waits it is 0 (permits are handed over)
        self._waiters: deque[_Ticket] = deque()
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} value={self._value} waiters={len(self._waiters)}>"

    def locked(self) -> bool:
        """True when an acquire would have to wait."""
        return self._value == 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit, waiting for one if needed.

        Returns:
            True once acquired; False if non-blocking and none was free, or on timeout.

        Raises:
            ValueError: a timeout was given with ``blocking=False``.
        """
        if timeout is not None and not blocking:
            raise ValueError("can't specify timeout for non-blocking acquire")
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._value:
                self._value -= 1
                return True
        finally:
            mutex.release()
        if not blocking:
            return False
        sched, waiter = _me()
        ticket = (waiter, waiter._gen)
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._value:  # released since we looked (another thread)
                self._value -= 1
                return True
            self._waiters.append(ticket)
        finally:
            mutex.release()
        try:
            if sched.park_timed(waiter, timeout) is not TIMED_OUT:
                return True
        except BaseException:
            if not _remove(self._mutex, self._waiters, ticket):
                self._release_one()  # handed over as we were killed: pass it on
            raise
        return not _remove(self._mutex, self._waiters, ticket)

    def __enter__(self) -> bool:
        return self.acquire()

    def _release_one(self) -> None:
        mutex = self._mutex
        mutex.acquire()
        try:
            if not self._waiters:
                self._value += 1
                return
            ticket = self._waiters.popleft()
        finally:
            mutex.release()
        _wake(ticket)

    def release(self, n: int = 1) -> None:
        """Return ``n`` permits, handing each to the longest waiter if there is one."""
        if n < 1:
            raise ValueError("n must be one or more")
        for _ in range(n):
            self._release_one()

    def __exit__(self, t: Any, v: Any, tb: Any) -> None:
        self._release_one()


class BoundedSemaphore(Semaphore):
    """A `Semaphore` that refuses to be released above its initial value.

    As with `threading.BoundedSemaphore`, the check compares the free permits plus ``n`` with
    the initial value; a permit being handed to a waiter is not free.
    """

    __slots__ = ("_initial",)

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value

    def release(self, n: int = 1) -> None:
        """Return ``n`` permits.

        Raises:
            ValueError: that would exceed the initial value.
        """
        if n < 1:
            raise ValueError("n must be one or more")
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._value + n > self._initial:
                raise ValueError("Semaphore released too many times")
        finally:
            mutex.release()
        super().release(n)

    def __exit__(self, t: Any, v: Any, tb: Any) -> None:
        self.release()


class Condition:
    """A condition variable with `threading.Condition`'s interface (default lock: an `RLock`).

    Also accepts a `Lock` or any lock with ``acquire``/``release``.
    """

    def __init__(self, lock: Any = None) -> None:
        self._lock = RLock() if lock is None else lock
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        for name in ("_is_owned", "_release_save", "_acquire_restore"):
            if hasattr(self._lock, name):
                setattr(self, name, getattr(self._lock, name))
        self._waiters: deque[_Ticket] = deque()
        self._mutex = threading.Lock()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)

    def __repr__(self) -> str:
        return f"<Condition {self._lock!r} waiters={len(self._waiters)}>"

    # Fallbacks for foreign locks (as in the standard library).
    def _is_owned(self) -> bool:
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def _release_save(self) -> Any:
        self._lock.release()

    def _acquire_restore(self, _state: Any) -> None:
        self._lock.acquire()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notify, reacquire the lock.

        Returns:
            False if ``timeout`` expired, else True.

        Raises:
            RuntimeError: the caller does not hold the lock.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        sched, waiter = _me()
        ticket = (waiter, waiter._gen)
        mutex = self._mutex
        mutex.acquire()
        try:
            self._waiters.append(ticket)
        finally:
            mutex.release()
        saved = self._release_save()
        try:
            if sched.park_timed(waiter, timeout) is not TIMED_OUT:
                return True
            # Notified as the timeout fired: count it as notified (nothing to pass on).
            return not _remove(self._mutex, self._waiters, ticket)
        except BaseException:
            if not _remove(self._mutex, self._waiters, ticket):
                self._notify(1)  # we were notified but cannot act on it: pass it on
            raise
        finally:
            self._acquire_restore(saved)

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Wait until ``predicate()`` is true; return its last value."""
        end = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            left = None
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    break
            self.wait(left)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters (the longest-waiting first).

        Raises:
            RuntimeError: the caller does not hold the lock.
        """
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._notify(n)

    def _notify(self, n: int) -> None:
        mutex = self._mutex
        mutex.acquire()
        try:
            waiters = self._waiters
            tickets = [waiters.popleft() for _ in range(min(n, len(waiters)))]
        finally:
            mutex.release()
        for ticket in tickets:
            _wake(ticket)

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(len(self._waiters))

    notifyAll = notify_all  # noqa: N815


class Queue(Generic[T]):
    """A FIFO queue with `queue.Queue`'s interface, for dhagas and threads alike.

    Subclasses may override ``_init``, ``_qsize``, ``_put`` and ``_get`` as with `queue.Queue`.
    `qsize` counts the items reserved for getters that were woken but have not run yet.

    Args:
        maxsize: at most this many items; 0 or less means unbounded.
    """

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._init(maxsize)
        self.mutex = self._mutex = threading.Lock()  # ``mutex``: queue.Queue's name for it
        self._getters: deque[_Ticket] = deque()
        self._putters: deque[_Ticket] = deque()
        self._got_reserved = 0  # items reserved for getters already woken
        self._put_reserved = 0  # free slots reserved for putters already woken
        self._joiners: list[_Ticket] = []
        self.unfinished_tasks = 0
        self.is_shutdown = False

    #: True while the storage is `Queue`'s own deque: the hot paths then skip ``_qsize()``.
    _plain = True

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._plain = cls._qsize is Queue._qsize and cls._init is Queue._init

    # The storage, overridden by LifoQueue and PriorityQueue (as in the standard library).
    def _init(self, maxsize: int) -> None:
        self.queue: Any = deque()

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: T) -> None:
        self.queue.append(item)

    def _get(self) -> T:
        return self.queue.popleft()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self._qsize()} maxsize={self.maxsize}>"

    def qsize(self) -> int:
        """The number of items queued (approximate while other threads run)."""
        mutex = self._mutex
        mutex.acquire()
        try:
            return self._qsize()
        finally:
            mutex.release()

    def empty(self) -> bool:
        """True when no item is queued."""
        mutex = self._mutex
        mutex.acquire()
        try:
            return not self._qsize()
        finally:
            mutex.release()

    def full(self) -> bool:
        """True when a put would have to wait."""
        mutex = self._mutex
        mutex.acquire()
        try:
            return 0 < self.maxsize <= self._qsize()
        finally:
            mutex.release()

    # ------------------------------------------------------------------ put
    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item``, waiting for a free slot if the queue is full.

        Raises:
            Full: non-blocking and full, or ``timeout`` expired.
            ShutDown: the queue was shut down.
        """
        mutex = self._mutex
        mutex.acquire()
        try:
            if self.is_shutdown:
                raise ShutDown("put on a shut-down queue")
            maxsize = self.maxsize
            size = len(self.queue) if self._plain else self._qsize()
            if maxsize <= 0 or size + self._put_reserved < maxsize:
                self.unfinished_tasks += 1
                getters = self._getters
                while getters and not size and not self._got_reserved:
                    # Hand the item straight to a getter of this thread: no storage, no
                    # reservation. A getter already woken (say, by its timeout) refuses it.
                    waiter, gen = getters[0]
                    sched = waiter._sched
                    if sched._thread_id != _get_ident():
                        break
                    getters.popleft()
                    if waiter._state is PARKED and gen == waiter._gen and waiter is not sched._top:
                        # Scheduler._unpark, inlined: the hot path of a hand-off.
                        waiter._state = RUNNING
                        waiter._resume_value = (item,)
                        waiter._resume_exc = None
                        sched._runq.append(waiter)
                        if not sched._drain_pending:
                            sched._drain_pending = True
                            sched._call_soon(sched._drain)
                    elif not sched._unpark(waiter, (item,), None, gen):
                        # Woken already (its timeout fired): it will find its ticket taken and
                        # claim a reservation, so reserve the item for it.
                        self._put(item)
                        self._got_reserved += 1
                    return
                self._put(item)
                if not getters or size + 1 <= self._got_reserved:
                    return
                self._got_reserved += 1
                ticket = getters.popleft()
            else:
                if not block:
                    raise Full
                if timeout is not None and timeout < 0:
                    raise ValueError("'timeout' must be a non-negative number")
                sched, waiter = _me()
                mine = (waiter, waiter._gen)
                self._putters.append(mine)
                ticket = None
        finally:
            mutex.release()
        if ticket is None:
            self._put_parked(sched, waiter, mine, item, timeout)
        else:
            _wake(ticket)

    def _put_parked(
        self, sched: Scheduler, waiter: _Waiter, ticket: _Ticket, item: T, timeout: float | None
    ) -> None:
        try:
            timed_out = sched.park_timed(waiter, timeout) is TIMED_OUT
        except BaseException:
            self._leave(ticket, self._putters, getter=False)
            raise
        if timed_out and _remove(self._mutex, self._putters, ticket):
            raise Full
        mutex = self._mutex  # a slot was reserved for us (or the queue was shut down)
        mutex.acquire()
        try:
            self._put_reserved -= 1
            if self.is_shutdown:
                raise ShutDown("put on a shut-down queue")
            self._put(item)
            self.unfinished_tasks += 1
            if not self._getters or self._qsize() <= self._got_reserved:
                return
            self._got_reserved += 1
            wake = self._getters.popleft()
        finally:
            mutex.release()
        _wake(wake)

    def put_nowait(self, item: T) -> None:
        """Put ``item`` if a slot is free, else raise `Full`."""
        self.put(item, False)

    # ------------------------------------------------------------------ get
    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the next item, waiting for one if the queue is empty.

        Raises:
            Empty: non-blocking and empty, or ``timeout`` expired.
            ShutDown: the queue was shut down and is empty.
        """
        mutex = self._mutex
        mutex.acquire()
        try:
            if (len(self.queue) if self._plain else self._qsize()) > self._got_reserved:
                item = self._get()
                if not self._putters or self.maxsize - self._qsize() <= self._put_reserved:
                    return item
                self._put_reserved += 1
                ticket = self._putters.popleft()
            elif self.is_shutdown:
                raise ShutDown("get from a shut-down, empty queue")
            elif not block:
                raise Empty
            else:
                if timeout is not None and timeout < 0:
                    raise ValueError("'timeout' must be a non-negative number")
                sched = getattr(_local, "sched", None)  # `_me()`, inlined: the hot path
                waiter = sched._current if sched is not None else None
                if waiter is None:
                    sched, waiter = _me()
                mine = (waiter, waiter._gen)
                self._getters.append(mine)
                ticket = None
        finally:
            mutex.release()
        if ticket is not None:
            _wake(ticket)
            return item
        if timeout is not None or waiter._pending_exc is not None or waiter is sched._top:
            return self._get_parked(sched, waiter, mine, timeout)
        # A dhaga waiting without a timeout: `Scheduler.park`'s fast path, inlined.
        waiter._state = PARKED
        runq = sched._runq
        if sched._batch > 0 and runq and runq[0]._state is RUNNING:
            # `Scheduler._switch_next`, inlined for its common case: the next dhaga in the
            # batch was parked (not new) and is runnable.
            sched._batch -= 1
            nxt = runq.popleft()
            sched._current = nxt
            gr = nxt._gr
            nxt = runq = None  # a suspended frame must not keep other dhagas alive
            gr.switch()
        else:
            runq = None
            sched._switch_next()
        got = waiter._resume_value
        if type(got) is tuple and waiter._resume_exc is None:  # handed over by a putter
            waiter._gen += 1
            waiter._resume_value = None
            return got[0]  # type: ignore[no-any-return]
        return self._get_parked(sched, waiter, mine, timeout, woken=True)

    def _reserve_slot(self) -> _Ticket | None:
        """After a get: the putter to wake for the freed slot, if any."""
        if self._putters and self.maxsize - self._qsize() > self._put_reserved:
            self._put_reserved += 1
            return self._putters.popleft()
        return None

    def _get_parked(
        self,
        sched: Scheduler,
        waiter: _Waiter,
        ticket: _Ticket,
        timeout: float | None,
        woken: bool = False,
    ) -> T:
        """Park until an item is handed over or reserved; ``woken``: `get` parked already."""
        while True:
            try:
                if woken:  # get() parked inline and was woken without an item in hand
                    woken = False
                    got = waiter._take_resume()
                else:
                    got = sched.park_timed(waiter, timeout)
            except BaseException:
                self._leave(ticket, self._getters, getter=True)
                raise
            if type(got) is tuple:  # handed over directly by a putter of this thread
                return got[0]  # type: ignore[no-any-return]
            if got is TIMED_OUT and _remove(self._mutex, self._getters, ticket):
                raise Empty
            mutex = self._mutex  # an item was reserved for us (or the queue was shut down)
            mutex.acquire()
            try:
                self._got_reserved -= 1
                if self._qsize():
                    item = self._get()
                    if not self._putters:
                        return item
                    wake = self._reserve_slot()
                    break
                if self.is_shutdown:
                    raise ShutDown("get from a shut-down, empty queue")
                # Someone emptied ``queue`` behind our back (under ``mutex``): wait again.
                ticket = (waiter, waiter._gen)
                self._getters.append(ticket)
            finally:
                mutex.release()
        if wake is not None:
            _wake(wake)
        return item

    def get_nowait(self) -> T:
        """Return an item if one is queued, else raise `Empty`."""
        return self.get(False)

    def _leave(self, ticket: _Ticket, waiters: deque, getter: bool) -> None:
        """A waiter killed while queued: drop its ticket, or pass its reservation on."""
        mutex = self._mutex
        mutex.acquire()
        try:
            try:
                waiters.remove(ticket)
                return
            except ValueError:
                pass
            if getter:
                self._got_reserved -= 1
                if not waiters or self._qsize() <= self._got_reserved:
                    return
                self._got_reserved += 1
            else:
                self._put_reserved -= 1
                if not waiters or (
                    self.maxsize > 0 and self.maxsize - self._qsize() <= self._put_reserved
                ):
                    return
                self._put_reserved += 1
            nxt = waiters.popleft()
        finally:
            mutex.release()
        _wake(nxt)

    # ------------------------------------------------------------------ tasks
    def task_done(self) -> None:
        """Mark one item fetched earlier as processed (for `join`).

        Raises:
            ValueError: called more times than there were items.
        """
        mutex = self._mutex
        mutex.acquire()
        try:
            unfinished = self.unfinished_tasks - 1
            if unfinished < 0:
                raise ValueError("task_done() called too many times")
            self.unfinished_tasks = unfinished
            if unfinished or not self._joiners:
                return
            joiners, self._joiners = self._joiners, []
        finally:
            mutex.release()
        for ticket in joiners:
            _wake(ticket)

    def join(self, timeout: float | None = None) -> None:
        """Wait until every item put has been marked done with `task_done`.

        Raises:
            Timeout: ``timeout`` expired first.
        """
        if not self.unfinished_tasks:
            return
        sched, waiter = _me()
        ticket = (waiter, waiter._gen)
        mutex = self._mutex
        mutex.acquire()
        try:
            if not self.unfinished_tasks:
                return
            self._joiners.append(ticket)
        finally:
            mutex.release()
        try:
            if sched.park_timed(waiter, timeout) is not TIMED_OUT:
                return
        except BaseException:
            _remove(self._mutex, self._joiners, ticket)  # type: ignore[arg-type]
            raise
        if _remove(self._mutex, self._joiners, ticket):  # type: ignore[arg-type]
            raise Timeout(f"queue not drained within {timeout}s", timeout)

    def shutdown(self, immediate: bool = False) -> None:
        """Refuse further puts and wake every waiter (``queue.Queue.shutdown`` of 3.13).

        With ``immediate``, also drop the items still queued (counting them done).
        """
        mutex = self._mutex
        mutex.acquire()
        try:
            self.is_shutdown = True
            if immediate:
                while self._qsize():
                    self._get()
                    if self.unfinished_tasks > 0:
                        self.unfinished_tasks -= 1
            getters, self._getters = list(self._getters), deque()
            putters, self._putters = list(self._putters), deque()
            self._got_reserved += len(getters)
            self._put_reserved += len(putters)
            joiners: list[_Ticket] = []
            if not self.unfinished_tasks:
                joiners, self._joiners = self._joiners, []
        finally:
            mutex.release()
        for ticket in getters + putters + joiners:
            _wake(ticket)


class LifoQueue(Queue[T]):
    """A last-in, first-out `Queue`."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _get(self) -> T:
        return self.queue.pop()


class PriorityQueue(Queue[T]):
    """A `Queue` that returns the lowest item first (``heapq`` order)."""

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _put(self, item: T) -> None:
        heapq.heappush(self.queue, item)

    def _get(self) -> T:
        return heapq.heappop(self.queue)


class SimpleQueue(Queue[T]):
    """An unbounded FIFO queue (`queue.SimpleQueue`'s interface)."""

    def __init__(self) -> None:
        super().__init__(0)
