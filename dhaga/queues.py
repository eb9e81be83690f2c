"""Queues for dhagas and threads alike, with `queue`'s names; public as ``dhaga.sync``'s.

How this works
--------------
Waiters park through the core's parking API (`dhaga._core.parking`): each takes a *ticket*,
queued in FIFO order under the queue's real mutex, and is woken from any thread. Nothing is lost
when a waiter leaves early (killed or timed out): `Queue` *notifies* the first getter (or
putter) and reserves an item (or a slot) for it: a newcomer cannot take what is reserved. A
notified getter (putter) that times out takes its item (its slot); one that is killed passes its
reservation on. A putter of the getter's own thread hands the item straight to it.

The fast path. An unbounded `Queue` (not a subclass with its own storage) is mostly used with
nobody waiting. While nobody waits and nothing is reserved (``_fast``), a put appends without
the mutex and a get pops without it: ``deque.append`` and ``popleft`` are atomic under the GIL,
and a fast put counts its task with ``next()`` on an `itertools.count` (also one C call, atomic:
two threads counting at once lose nothing, where ``+= 1`` could). A getter about to queue
clears ``_fast`` under the mutex and then looks at the items again; a fast put reads ``_fast``
again after appending. Under the GIL one of the two sees the other: either the getter finds the
item, or the putter finds ``_fast`` cleared and reserves the item for the first getter under the
mutex. Bounded queues and subclasses take the mutex every time. Across threads, a fast get can
take an item at the very instant it is reserved for a woken getter; that getter then waits
again, first in line.

`dhaga.sync` re-exports every name here; import them from there.

This module knows the scheduler's parking rules; it knows nothing about I/O, nor about
`dhaga.sync`'s locks.
"""

from __future__ import annotations

import heapq
import itertools
import queue as _stdqueue
import threading
from collections import deque
from typing import Any, Generic, TypeVar

from ._core.parking import Ticket as _Ticket
from ._core.parking import current_waiter, hand_over, park, park_queued, unqueue, wake
from ._core.parking import remove as _remove
from ._core.parking import ticket as ticket_
from .errors import BlockingError, Timeout

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full", "ShutDown"]

Empty = _stdqueue.Empty
Full = _stdqueue.Full

if hasattr(_stdqueue, "ShutDown"):  # Python 3.13+
    ShutDown = _stdqueue.ShutDown
else:
    class ShutDown(Exception):  # type: ignore[no-redef]
        """Raised by a `Queue` that was shut down (``queue.ShutDown`` from Python 3.13)."""


T = TypeVar("T")
_EXPIRED = object()  # what `park` returns here when its timeout expired


class _Joining:
    """What a ``Queue.join()`` waits on, as ``dhaga.dump()`` shows it."""

    __slots__ = ("queue",)

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __repr__(self) -> str:
        return f"join() of {self.queue!r} ({self.queue.unfinished_tasks} tasks not done)"
_PARK = object()  # `get` found nothing: it parks
_RESERVED = object()  # a waiter's wake-up: an item (a slot) is reserved for it, or shut down


def _counted(counter: itertools.count) -> int:
    """How many times ``next`` was called on an `itertools.count` started at 0."""
    return int(repr(counter)[6:-1])  # "count(N)": the next value is the number taken


class _FirstInLine:
    """Queues a ticket at the front: for a getter whose reserved item was taken."""

    __slots__ = ("append",)

    def __init__(self, tickets: deque) -> None:
        self.append = tickets.appendleft


class Queue(Generic[T]):
    """A FIFO queue with `queue.Queue`'s interface, for dhagas and threads alike.

    Subclasses may override ``_init``, ``_qsize``, ``_put`` and ``_get`` as with `queue.Queue`.
    `qsize` counts the items reserved for getters that were woken but have not run yet.

    Args:
        maxsize: at most this many items; 0 or less means unbounded (fixed at creation).
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
        self._unfinished = 0  # tasks counted under the mutex (see `unfinished_tasks`)
        self._fast_count = itertools.count()  # tasks counted by fast puts, without the mutex
        self._can_fast = self._plain and maxsize <= 0
        self._fast = self._can_fast  # see "The fast path" in the module docstring
        self.is_shutdown = False
        # The tests of the waiting paths' hot cases that change only with ``_fast`` and
        # ``is_shutdown``, folded into a flag each (kept with them): `get` may park at once on
        # a plain queue off the fast path; `put` may hand over on a plain unbounded one.
        self._hot_get = self._plain and not self._fast
        self._hot_put = self._can_fast

    #: True while the storage is `Queue`'s own deque: the hot paths then skip ``_qsize()``.
    _plain = True

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._plain = (cls._qsize is Queue._qsize and cls._init is Queue._init
                      and cls._put is Queue._put and cls._get is Queue._get)

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet marked done with `task_done` (`queue.Queue`'s attribute)."""
        return self._unfinished + _counted(self._fast_count)

    def _refresh(self) -> None:
        """Under the mutex: take the fast path again once nobody waits and nothing is reserved."""
        self._fast = (self._can_fast and not self._getters and not self._putters
                      and not self._got_reserved and not self.is_shutdown)
        self._hot_get = self._plain and not self._fast and not self.is_shutdown

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

        Args:
            item: the item to queue.
            block: wait for a free slot; False raises `Full` at once when there is none.
            timeout: with ``block``, seconds to wait at most; None waits forever.

        Raises:
            Full: non-blocking and full, or ``timeout`` expired.
            ShutDown: the queue was shut down.
        """
        if self._fast:
            # The fast path: counted before the item shows, so whoever gets it sees the count.
            next(self._fast_count)
            self.queue.append(item)
            if self._fast:
                return  # no getter queued meanwhile: one that queues later sees the item
            mutex = self._mutex  # a getter queued meanwhile: reserve the item for it
            mutex.acquire()
            try:
                ticket = self._notify_getter()
            finally:
                mutex.release()
            if ticket is not None:
                wake(ticket, _RESERVED)
            return
        mutex = self._mutex
        mutex.acquire()
        getters = self._getters
        if getters and self._hot_put and not self.queue and not self._got_reserved:
            # The hot hand-off: straight to the first getter if it is of this thread, no
            # storage, no reservation. (One woken already, say by its timeout, refuses it:
            # then the general path below reserves the item for it.)
            if hand_over(getters[0], item):
                getters.popleft()
                self._unfinished += 1
                mutex.release()
                return
        try:
            if self.is_shutdown:
                raise ShutDown("put on a shut-down queue")
            maxsize = self.maxsize
            size = len(self.queue) if self._plain else self._qsize()
            if maxsize <= 0 or size + self._put_reserved < maxsize:
                self._unfinished += 1
                getters = self._getters
                if getters and not size and not self._got_reserved:
                    # Hand the item straight to a getter of this thread: no storage, no
                    # reservation. A getter already woken (say, by its timeout) refuses it.
                    handed = hand_over(getters[0], item)
                    if handed is not None:
                        getters.popleft()
                        if not handed:
                            # Woken already (its timeout fired): it will find its ticket taken
                            # and claim a reservation, so reserve the item for it.
                            self._put(item)
                            self._got_reserved += 1
                        mutex.release()
                        return
                self._put(item)
                ticket = self._notify_getter() if getters else None
            else:
                if not block:
                    raise Full
                if timeout is not None and timeout < 0:
                    raise ValueError("'timeout' must be a non-negative number")
                ticket = _PARK
        except BaseException:
            mutex.release()
            raise
        if ticket is _PARK:
            self._put_parked(item, timeout)  # still holding the mutex: it queues us
            return
        mutex.release()
        if ticket is not None:
            wake(ticket, _RESERVED)

    def _notify_getter(self) -> _Ticket | None:
        """Under the mutex, after an item was stored: reserve it for the first getter, if any."""
        getters = self._getters
        if not getters or self._qsize() <= self._got_reserved:
            return None
        self._got_reserved += 1
        return getters.popleft()

    def _put_parked(self, item: T, timeout: float | None) -> None:
        """Queue up for a slot (the caller holds the mutex), park, then put ``item``."""
        try:
            got = park_queued(self._putters, self._mutex, timeout, _EXPIRED, self)
        except BlockingError:
            raise  # called on the loop: it never queued
        except BaseException:
            self._leave(self._putters, getter=False)
            raise
        if got is _EXPIRED and unqueue(self._putters, self._mutex):
            raise Full
        mutex = self._mutex  # a slot was reserved for us (or the queue was shut down)
        mutex.acquire()
        try:
            self._put_reserved -= 1
            if self.is_shutdown:
                raise ShutDown("put on a shut-down queue")
            self._put(item)
            self._unfinished += 1
            wake_ = self._notify_getter()
        finally:
            mutex.release()
        if wake_ is not None:
            wake(wake_, _RESERVED)

    def put_nowait(self, item: T) -> None:
        """Put ``item`` if a slot is free, else raise `Full`.

        Args:
            item: the item to queue.

        Raises:
            Full: the queue is full.
            ShutDown: the queue was shut down.
        """
        self.put(item, False)

    # ------------------------------------------------------------------ get
    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the next item, waiting for one if the queue is empty.

        Args:
            block: wait for an item; False raises `Empty` at once when there is none.
            timeout: with ``block``, seconds to wait at most; None waits forever.

        Returns:
            the next item (FIFO for `Queue`, LIFO for `LifoQueue`, lowest first for
            `PriorityQueue`).

        Raises:
            Empty: non-blocking and empty, or ``timeout`` expired.
            ShutDown: the queue was shut down and is empty.
        """
        if self._fast:
            try:
                return self.queue.popleft()  # type: ignore[no-any-return]
            except IndexError:
                pass
        mutex = self._mutex
        mutex.acquire()
        if self._hot_get and not self.queue and block and timeout is None and not self._got_reserved:
            # The hot wait: a plain queue, empty, and nothing to set up first.
            try:
                got = park_queued(self._getters, mutex, None, _EXPIRED, self)  # releases it
            except BlockingError:
                raise  # called on the loop: it never queued
            except BaseException:
                self._leave(self._getters, getter=True)
                raise
            if got is _RESERVED:
                return self._get_reserved(got, None)
            return got  # type: ignore[no-any-return] - handed over directly by a putter
        try:
            if (len(self.queue) if self._plain else self._qsize()) > self._got_reserved:
                item = self._get()
                ticket = self._reserve_slot()
                if self._can_fast and not self._fast:
                    self._refresh()  # after waits: back on the fast path if nobody waits
            elif self.is_shutdown:
                raise ShutDown("get from a shut-down, empty queue")
            elif not block:
                raise Empty
            else:
                if timeout is not None and timeout < 0:
                    raise ValueError("'timeout' must be a non-negative number")
                ticket = _PARK
                if self._fast:
                    # Off the fast path before queueing, then look again: a fast put reads
                    # ``_fast`` after storing its item, so either it sees False (and wakes us)
                    # or we see its item here.
                    self._fast = False
                    self._hot_get = self._plain  # (not shut down: see above)
                    if len(self.queue) > self._got_reserved:
                        self._refresh()
                        item = self._get()
                        ticket = None
        except BaseException:
            mutex.release()
            raise
        if ticket is not _PARK:
            mutex.release()
            if ticket is not None:
                wake(ticket, _RESERVED)
            return item
        try:
            got = park_queued(self._getters, mutex, timeout, _EXPIRED, self)  # releases the mutex
        except BlockingError:
            raise  # called on the loop: it never queued
        except BaseException:
            self._leave(self._getters, getter=True)
            raise
        if got is _RESERVED or got is _EXPIRED:
            return self._get_reserved(got, timeout)
        return got  # type: ignore[no-any-return] - handed over directly by a putter

    def _reserve_slot(self) -> _Ticket | None:
        """After a get: the putter to wake for the freed slot, if any."""
        if self._putters and self.maxsize - self._qsize() > self._put_reserved:
            self._put_reserved += 1
            return self._putters.popleft()
        return None

    def _get_reserved(self, got: Any, timeout: float | None) -> T:
        """A parked getter woken without an item in hand: take the one reserved for it."""
        mutex = self._mutex
        while True:
            if got is not _RESERVED and got is not _EXPIRED:  # handed over by a putter
                return got  # type: ignore[no-any-return]
            if got is _EXPIRED and unqueue(self._getters, mutex):
                raise Empty
            mutex.acquire()  # an item was reserved for us (or the queue was shut down)
            try:
                self._got_reserved -= 1
                if self._qsize():
                    item = self._get()
                    wake_ = self._reserve_slot()
                    if self._can_fast:
                        self._refresh()
                    break
                if self.is_shutdown:
                    raise ShutDown("get from a shut-down, empty queue")
            except BaseException:
                mutex.release()
                raise
            # Someone took the item reserved for us (a newcomer of another thread, at the
            # instant it was reserved): wait again, first in line.
            try:
                got = park_queued(_FirstInLine(self._getters), mutex, timeout, _EXPIRED, self)
            except BaseException:
                self._leave(self._getters, getter=True)
                raise
        mutex.release()
        if wake_ is not None:
            wake(wake_, _RESERVED)
        return item

    def get_nowait(self) -> T:
        """Return an item if one is queued, else raise `Empty`.

        Returns:
            the next item.

        Raises:
            Empty: no item is queued.
            ShutDown: the queue was shut down and is empty.
        """
        return self.get(False)

    def _leave(self, waiters: deque, getter: bool) -> None:
        """The caller, queued, was killed: drop its ticket, or pass its reservation on."""
        me = current_waiter(may_block=False)
        mutex = self._mutex
        mutex.acquire()
        try:
            for t in waiters:
                if t[0] is me:
                    waiters.remove(t)
                    if self._can_fast:
                        self._refresh()
                    return
            if getter:
                self._got_reserved -= 1
                if not waiters or self._qsize() <= self._got_reserved:
                    if self._can_fast:
                        self._refresh()
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
        wake(nxt, _RESERVED)

    # ------------------------------------------------------------------ tasks
    def task_done(self) -> None:
        """Mark one item fetched earlier as processed (for `join`).

        Raises:
            ValueError: called more times than there were items.
        """
        mutex = self._mutex
        mutex.acquire()
        try:
            unfinished = self._unfinished + _counted(self._fast_count) - 1
            if unfinished < 0:
                raise ValueError("task_done() called too many times")
            self._unfinished -= 1
            if unfinished or not self._joiners:
                return
            joiners, self._joiners = self._joiners, []
        finally:
            mutex.release()
        for ticket in joiners:
            wake(ticket, True)

    def join(self, timeout: float | None = None) -> None:
        """Wait until every item put has been marked done with `task_done`.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Raises:
            Timeout: ``timeout`` expired first.
        """
        if not self.unfinished_tasks:
            return
        mine = ticket_()
        mutex = self._mutex
        mutex.acquire()
        try:
            if not self.unfinished_tasks:
                return
            self._joiners.append(mine)
        finally:
            mutex.release()
        try:
            if park(mine, timeout, _EXPIRED, _Joining(self)) is not _EXPIRED:
                return
        except BaseException:
            _remove(self._mutex, self._joiners, mine)
            raise
        if _remove(self._mutex, self._joiners, mine):
            raise Timeout(f"queue not drained within {timeout}s", timeout)

    def shutdown(self, immediate: bool = False) -> None:
        """Refuse further puts and wake every waiter (``queue.Queue.shutdown`` of 3.13).

        With ``immediate``, also drop the items still queued (counting them done).

        Args:
            immediate: also drop the queued items; getters then raise `ShutDown` at once.
        """
        mutex = self._mutex
        mutex.acquire()
        try:
            self.is_shutdown = True
            self._fast = self._hot_get = self._hot_put = False
            if immediate:
                while self._qsize():
                    self._get()
                    if self.unfinished_tasks > 0:
                        self._unfinished -= 1
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
            wake(ticket, _RESERVED)


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
