"""Synchronisation primitives and queues for dhagas, with `threading`'s and `queue`'s names.

How this works
--------------
Every primitive keeps its waiters as *tickets* ``(waiter, gen)`` in FIFO order, and guards its
state with a small real mutex, so the same object also works between dhagas of different OS
threads and plain threads (each side parks on its own scheduler; a wake-up crosses threads
through the loop's thread-safe callback, addressed to one park by ``gen``).

Nothing is lost when a waiter leaves early (killed or timed out):
- `Lock` and `Semaphore` *hand over* a permit to the first waiter on release. A waiter that
  finds, as it leaves, that its ticket was already taken owns a permit it did not use, and
  releases it to the next waiter.
- `Queue` *notifies* the first getter (or putter) and reserves an item (or a slot) for it: a
  newcomer cannot take what is reserved. A notified waiter that leaves passes its reservation
  on to the next one.
A waiter woken with a value always receives it (a later kill is delivered at its next blocking
point), so handed-over permits and items cannot vanish between the wake-up and the waiter.

This module knows the scheduler's parking rules; it knows nothing about I/O.
"""

from __future__ import annotations

import heapq
import queue as _stdqueue
import threading
from collections import deque
from typing import Any, Callable, Generic, TypeVar

from .scheduler import TIMED_OUT, _Waiter, get_scheduler, wake

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


class ShutDown(Exception):
    """Raised by a `Queue` that was shut down (as ``queue.ShutDown`` in Python 3.13)."""


T = TypeVar("T")
_Ticket = tuple  # (waiter, gen)


def _check_timeout(blocking: bool, timeout: float | None) -> float | None:
    if timeout is not None and timeout < 0:
        if timeout == -1:  # threading's spelling of "forever"
            return None
        raise ValueError("timeout must be a non-negative number")
    if not blocking and timeout is not None:
        raise ValueError("can't specify a timeout for a non-blocking call")
    return timeout


def _wake_ticket(ticket: _Ticket, value: Any = True) -> None:
    wake(ticket[0], value, None, ticket[1])


class Event:
    """A flag that dhagas (and threads) can wait for; `threading.Event`'s interface."""

    __slots__ = ("_flag", "_waiters", "_mutex")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: dict[_Ticket, None] = {}
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"<Event {'set' if self._flag else 'unset'} waiters={len(self._waiters)}>"

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set  # noqa: N815 - threading's old name

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        with self._mutex:
            self._flag = True
            waiters, self._waiters = self._waiters, {}
        for ticket in waiters:
            _wake_ticket(ticket)

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set.

        Returns:
            the flag: True, or False if ``timeout`` expired first.
        """
        if self._flag:
            return True
        sched = get_scheduler()
        waiter = sched.waiter()
        ticket = (waiter, waiter._gen)
        with self._mutex:
            if self._flag:
                return True
            self._waiters[ticket] = None
        try:
            return sched.park_timed(waiter, timeout) is not TIMED_OUT or self._flag
        finally:
            with self._mutex:
                self._waiters.pop(ticket, None)


class Semaphore:
    """A counter of permits; `threading.Semaphore`'s interface, FIFO, hand-over on release."""

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
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
        """
        timeout = _check_timeout(blocking, timeout)
        with self._mutex:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return True
            if not blocking:
                return False
            sched = get_scheduler()
            waiter = sched.waiter()
            ticket = (waiter, waiter._gen)
            self._waiters.append(ticket)
        got = False
        try:
            got = sched.park_timed(waiter, timeout) is not TIMED_OUT
        finally:
            if not got:
                with self._mutex:
                    try:
                        self._waiters.remove(ticket)
                        handed = False
                    except ValueError:
                        handed = True  # a permit is on its way to us: pass it on
                if handed:
                    self._release_one()
        return got

    __enter__ = acquire

    def _release_one(self) -> None:
        with self._mutex:
            if self._waiters:
                ticket = self._waiters.popleft()
            else:
                self._value += 1
                return
        _wake_ticket(ticket)

    def release(self, n: int = 1) -> None:
        """Return ``n`` permits, handing each to the longest waiter if there is one."""
        if n < 1:
            raise ValueError("n must be one or more")
        for _ in range(n):
            self._release_one()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """A `Semaphore` that refuses to be released above its initial value."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value
        self._held = 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        got = super().acquire(blocking, timeout)
        if got:
            with self._mutex:
                self._held += 1
        return got

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        with self._mutex:
            if n > self._held:
                raise ValueError("Semaphore released too many times")
            self._held -= n
        super().release(n)


class Lock:
    """A mutual-exclusion lock with `threading.Lock`'s interface; waiters served FIFO."""

    def __init__(self) -> None:
        self._sem = Semaphore(1)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'locked' if self.locked() else 'unlocked'}>"

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._sem.acquire(blocking, None if timeout == -1 else timeout)

    def release(self) -> None:
        sem = self._sem
        with sem._mutex:
            if sem._value > 0:
                raise RuntimeError("release unlocked lock")
        sem._release_one()

    def locked(self) -> bool:
        return self._sem._value == 0

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _owner() -> _Waiter:
    """The identity that owns an `RLock`: the current dhaga, or the thread's top level."""
    sched = get_scheduler()
    d = sched._current
    return d if d is not None else sched._top


class RLock:
    """A reentrant lock owned by a dhaga (or a thread's top level); `threading.RLock`'s interface."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._owner: _Waiter | None = None
        self._count = 0

    def __repr__(self) -> str:
        return f"<RLock owner={self._owner!r} count={self._count}>"

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
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
        if self._owner is not _owner():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            self._lock.release()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def locked(self) -> bool:
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


class Condition:
    """A condition variable with `threading.Condition`'s interface (default lock: an `RLock`)."""

    def __init__(self, lock: Lock | RLock | None = None) -> None:
        self._lock = RLock() if lock is None else lock
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._waiters: deque[_Ticket] = deque()
        self._mutex = threading.Lock()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)

    def __repr__(self) -> str:
        return f"<Condition {self._lock!r} waiters={len(self._waiters)}>"

    def _is_owned(self) -> bool:
        lock = self._lock
        if isinstance(lock, RLock):
            return lock._is_owned()
        return lock.locked()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notify, reacquire the lock.

        Returns:
            False if ``timeout`` expired, else True.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        sched = get_scheduler()
        waiter = sched.waiter()
        ticket = (waiter, waiter._gen)
        with self._mutex:
            self._waiters.append(ticket)
        lock = self._lock
        saved = lock._release_save() if isinstance(lock, RLock) else lock.release()
        notified = False
        try:
            notified = sched.park_timed(waiter, timeout) is not TIMED_OUT
            return notified
        finally:
            if not notified:
                with self._mutex:
                    try:
                        self._waiters.remove(ticket)
                    except ValueError:
                        pass
            if isinstance(lock, RLock):
                lock._acquire_restore(saved)  # type: ignore[arg-type]
            else:
                lock.acquire()

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Wait until ``predicate()`` is true; return its last value."""
        import time

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
        """Wake up to ``n`` waiters (the longest-waiting first)."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        with self._mutex:
            tickets = [self._waiters.popleft() for _ in range(min(n, len(self._waiters)))]
        for ticket in tickets:
            _wake_ticket(ticket)

    def notify_all(self) -> None:
        self.notify(len(self._waiters))

    notifyAll = notify_all  # noqa: N815


class Queue(Generic[T]):
    """A FIFO queue with `queue.Queue`'s interface, for dhagas and threads alike.

    Args:
        maxsize: at most this many items; 0 or less means unbounded.
    """

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._init(maxsize)
        self._mutex = threading.Lock()
        self._getters: deque[_Ticket] = deque()
        self._putters: deque[_Ticket] = deque()
        self._got_reserved = 0  # items reserved for getters already notified
        self._put_reserved = 0  # free slots reserved for putters already notified
        self.unfinished_tasks = 0
        self._all_done = Event()
        self._all_done.set()
        self._shutdown = False

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
        return self._qsize()

    def empty(self) -> bool:
        return not self._qsize()

    def full(self) -> bool:
        return 0 < self.maxsize <= self._qsize()

    # ------------------------------------------------------------------ put
    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item``, waiting for a free slot if the queue is full.

        Raises:
            Full: non-blocking and full, or ``timeout`` expired.
            ShutDown: the queue was shut down.
        """
        timeout = _check_timeout(block, timeout)
        with self._mutex:
            if self._shutdown:
                raise ShutDown("put on a shut-down queue")
            if self.maxsize <= 0 or self._qsize() + self._put_reserved < self.maxsize:
                self._put_locked(item)
                return
            if not block:
                raise Full
            sched = get_scheduler()
            waiter = sched.waiter()
            ticket = (waiter, waiter._gen)
            self._putters.append(ticket)
        if not self._wait_reserved(sched, waiter, ticket, timeout, self._putters, "_put_reserved"):
            raise Full
        with self._mutex:  # a slot was reserved for us
            self._put_reserved -= 1
            if self._shutdown:
                raise ShutDown("put on a shut-down queue")
            self._put_locked(item)

    def _put_locked(self, item: T) -> None:
        self._put(item)
        self.unfinished_tasks += 1
        if self.unfinished_tasks == 1:
            self._all_done.clear()
        ticket = None
        if self._getters and self._qsize() > self._got_reserved:
            ticket = self._getters.popleft()
            self._got_reserved += 1
        if ticket is not None:
            _wake_ticket(ticket)

    def put_nowait(self, item: T) -> None:
        self.put(item, block=False)

    # ------------------------------------------------------------------ get
    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the next item, waiting for one if the queue is empty.

        Raises:
            Empty: non-blocking and empty, or ``timeout`` expired.
            ShutDown: the queue was shut down and is empty.
        """
        timeout = _check_timeout(block, timeout)
        with self._mutex:
            if self._qsize() > self._got_reserved:
                return self._get_locked()
            if self._shutdown:
                raise ShutDown("get from a shut-down, empty queue")
            if not block:
                raise Empty
            sched = get_scheduler()
            waiter = sched.waiter()
            ticket = (waiter, waiter._gen)
            self._getters.append(ticket)
        if not self._wait_reserved(sched, waiter, ticket, timeout, self._getters, "_got_reserved"):
            raise Empty
        with self._mutex:  # an item was reserved for us
            self._got_reserved -= 1
            if not self._qsize():
                raise ShutDown("get from a shut-down, empty queue")
            return self._get_locked()

    def _get_locked(self) -> T:
        item = self._get()
        ticket = None
        if self._putters and self.maxsize > 0:
            if self.maxsize - self._qsize() > self._put_reserved:
                ticket = self._putters.popleft()
                self._put_reserved += 1
        if ticket is not None:
            _wake_ticket(ticket)
        return item

    def get_nowait(self) -> T:
        return self.get(block=False)

    # ------------------------------------------------------------------ waiting
    def _wait_reserved(self, sched: Any, waiter: _Waiter, ticket: _Ticket,
                       timeout: float | None, waiters: deque, counter: str) -> bool:
        """Park until notified (a reservation made for us). False on timeout."""
        notified = False
        try:
            notified = sched.park_timed(waiter, timeout) is not TIMED_OUT
        finally:
            if not notified:
                with self._mutex:
                    try:
                        waiters.remove(ticket)
                        reserved = False
                    except ValueError:
                        reserved = True  # notified as we left: pass the reservation on
                    if reserved:
                        setattr(self, counter, getattr(self, counter) - 1)
                        nxt = self._renotify(waiters, counter)
                if reserved and nxt is not None:
                    _wake_ticket(nxt)
        return notified

    def _renotify(self, waiters: deque, counter: str) -> _Ticket | None:
        if not waiters:
            return None
        if counter == "_got_reserved":
            if self._qsize() <= self._got_reserved:
                return None
        elif self.maxsize > 0 and self.maxsize - self._qsize() <= self._put_reserved:
            return None
        setattr(self, counter, getattr(self, counter) + 1)
        return waiters.popleft()

    # ------------------------------------------------------------------ tasks
    def task_done(self) -> None:
        """Mark one item fetched earlier as processed (for `join`)."""
        with self._mutex:
            if self.unfinished_tasks <= 0:
                raise ValueError("task_done() called too many times")
            self.unfinished_tasks -= 1
            done = self.unfinished_tasks == 0
        if done:
            self._all_done.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait until every item put has been marked done with `task_done`.

        Raises:
            Timeout: ``timeout`` expired first.
        """
        from .errors import Timeout

        if not self._all_done.wait(timeout):
            raise Timeout(f"queue not drained within {timeout}s", timeout)

    def shutdown(self, immediate: bool = False) -> None:
        """Refuse further puts and wake every waiter (``queue.Queue.shutdown`` of 3.13).

        With ``immediate``, also drop the items still queued.
        """
        with self._mutex:
            self._shutdown = True
            if immediate:
                while self._qsize():
                    self._get()
                    self.unfinished_tasks -= 1
            getters, self._getters = list(self._getters), deque()
            putters, self._putters = list(self._putters), deque()
            self._got_reserved += len(getters)
            self._put_reserved += len(putters)
        for ticket in getters + putters:
            _wake_ticket(ticket)
        if immediate:
            self._all_done.set()


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
