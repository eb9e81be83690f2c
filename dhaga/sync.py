"""Synchronisation primitives for dhagas, with `threading`'s names (and `dhaga.queues`' queues).

How this works
--------------
Waiters are *tickets* of the core's parking API (`dhaga._core.parking`) in FIFO order under a
small real mutex, woken from any thread, so every primitive also works between dhagas of
different OS threads and plain threads. The queues live in `dhaga.queues` and the semaphores in `dhaga.semaphores`;
this module re-exports them, as ``dhaga.sync`` is their public home.

Nothing is lost when a waiter leaves early (killed or timed out):
- `Lock` and `Semaphore` *hand over* a permit to the first waiter on release. A waiter that
  finds, as it leaves, that its ticket was already taken owns a permit: on a timeout it keeps it
  (the acquire succeeded after all); when killed it releases it to the next waiter.
- `Condition` notifies the first waiters. A notified waiter that times out counts as notified;
  one that is killed passes the notification on (as `Queue` passes on a reservation).

`Lock` takes no mutex when uncontended: its state is a real non-blocking `_thread.lock`, which
stays held while the lock is handed from one holder to the next. An acquirer that fails retries
under the mutex before queueing; a releaser checks ``mutex.locked()`` *before* the waiters, so
an acquirer between its retry and its queueing is always seen (see `Lock.release`).

This module parks only through `dhaga._core.parking`; it knows nothing about I/O, nor about how the
queues and semaphores it re-exports work.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, TypeVar

from ._core.parking import Ticket as _Ticket
from ._core.parking import park, park_queued, ticket, unqueue, wake
from ._core.parking import remove as _remove
from .errors import BlockingError
from .queues import Empty, Full, LifoQueue, PriorityQueue, Queue, ShutDown, SimpleQueue
from .scheduler import current
from .semaphores import BoundedSemaphore, Semaphore

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

T = TypeVar("T")


def _lock_timeout(blocking: bool, timeout: float | None) -> float | None:
    """Validate ``acquire(blocking, timeout)`` as `threading.Lock` does; -1 means forever."""
    if timeout is None or timeout == -1:
        return None
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    return timeout


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
        for t in waiters:
            wake(t, True)

    def clear(self) -> None:
        """Reset the flag; later `wait` calls block again."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            the flag: True, or False if ``timeout`` expired first.
        """
        if self._flag:
            return True
        mine = ticket()
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._flag:
                return True
            self._waiters[mine] = None
        finally:
            mutex.release()
        try:
            if park(mine, timeout, False, self):
                return True  # set() took our ticket
        except BaseException:
            mutex = self._mutex
            mutex.acquire()
            try:
                self._waiters.pop(mine, None)
            finally:
                mutex.release()
            raise
        mutex = self._mutex
        mutex.acquire()
        try:
            self._waiters.pop(mine, None)
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
        mutex = self._mutex
        mutex.acquire()
        if held.acquire(False):  # released since we looked: never queue for a free lock
            mutex.release()
            return True
        try:
            if park_queued(self._waiters, mutex, timeout, False, self):  # releases the mutex
                return True  # handed over to us
        except BlockingError:
            raise  # called on the loop: it never queued
        except BaseException:
            if not unqueue(self._waiters, self._mutex):
                self.release()  # handed over as we were killed: pass it on
            raise
        # Timed out; if it was handed over meanwhile, the acquire succeeded after all.
        return not unqueue(self._waiters, self._mutex)

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
            t = self._waiters.popleft()
        finally:
            mutex.release()
        wake(t, True)

    __exit__ = release  # one call fewer per ``with lock:`` than a wrapper

    # For Condition.
    def _is_owned(self) -> bool:
        return self._held.locked()

    def _release_save(self) -> None:
        self.release()

    def _acquire_restore(self, _state: Any) -> None:
        self.acquire()


class _ThreadOwner:
    """Who owns an `RLock` taken by a thread's top-level code (one per OS thread)."""

    __slots__ = ("thread",)

    def __init__(self) -> None:
        self.thread = _get_ident()

    def __repr__(self) -> str:
        return f"<top level of thread {self.thread}>"


_get_ident = threading.get_ident
_owners = threading.local()  # dhaga's modules keep the real threading (see dhaga.monkey)


def _owner() -> Any:
    """The identity that owns an `RLock`: the current dhaga, or the thread's top level.

    The top level's identity needs no scheduler: logging takes its handlers' locks while the
    scheduler's own event loop is being created (asyncio logs its selector), so asking for the
    scheduler here would recurse once ``threading`` is patched.
    """
    d = current()
    if d is not None:
        return d
    owner = getattr(_owners, "owner", None)
    if owner is None:
        owner = _owners.owner = _ThreadOwner()
    return owner


class RLock:
    """A reentrant lock owned by a dhaga (or a thread's top level); `threading.RLock`'s interface.

    Ownership is per dhaga, as it is per thread for `threading.RLock`: two dhagas of one
    thread exclude each other.
    """

    __slots__ = ("_lock", "_owner", "_count", "__weakref__")

    def __init__(self) -> None:
        self._lock = Lock()
        self._owner: Any = None
        self._count = 0

    def __repr__(self) -> str:
        return f"<RLock owner={self._owner!r} count={self._count}>"

    def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        """Take the lock (again, if the caller owns it already); see `Lock.acquire`.

        Args:
            blocking: wait for the lock if another owner holds it; False returns at once.
            timeout: with ``blocking``, seconds to wait at most; -1 or None waits forever.

        Returns:
            True once the caller holds the lock; False if it could not be taken in time.
        """
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

    def _release_save(self) -> tuple[int, Any]:
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._lock.release()
        return state

    def _acquire_restore(self, state: tuple[int, Any]) -> None:
        self._lock.acquire()
        self._count, self._owner = state


class Condition:
    """A condition variable with `threading.Condition`'s interface (default lock: an `RLock`).

    Also accepts a `Lock` or any lock with ``acquire``/``release``.

    Args:
        lock: the lock to use (a `Lock`, an `RLock` or any object with ``acquire``/``release``);
            None makes a new `RLock`.
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

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            False if ``timeout`` expired, else True.

        Raises:
            RuntimeError: the caller does not hold the lock.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        mine = ticket()
        mutex = self._mutex
        mutex.acquire()
        try:
            self._waiters.append(mine)
        finally:
            mutex.release()
        saved = self._release_save()
        try:
            if park(mine, timeout, False, self):
                return True
            # Notified as the timeout fired: count it as notified (nothing to pass on).
            return not _remove(self._mutex, self._waiters, mine)
        except BaseException:
            if not _remove(self._mutex, self._waiters, mine):
                self._notify(1)  # we were notified but cannot act on it: pass it on
            raise
        finally:
            self._acquire_restore(saved)

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Wait until ``predicate()`` is true; return its last value.

        Args:
            predicate: called with the lock held; waiting ends when it returns a true value.
            timeout: seconds to wait at most, in all; None waits forever.

        Returns:
            the predicate's last value (false if the timeout expired first).

        Raises:
            RuntimeError: the caller does not hold the lock.
        """
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

        Args:
            n: how many waiters to wake at most.

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
        for t in tickets:
            wake(t, True)

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(len(self._waiters))

    notifyAll = notify_all  # noqa: N815
