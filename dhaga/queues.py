"""Queues for dhagas and threads alike, with `queue`'s names; public as ``dhaga.sync``'s.

How this works
--------------
Waiters are *tickets* in FIFO order under the queue's real mutex, woken from any thread (see
`dhaga._waiting`). Nothing is lost when a waiter leaves early (killed or timed out): `Queue`
*notifies* the first getter (or putter) and reserves an item (or a slot) for it: a newcomer
cannot take what is reserved. A notified getter (putter) that times out takes its item (its
slot); one that is killed passes its reservation on.

`dhaga.sync` re-exports every name here; import them from there.

This module knows the scheduler's parking rules; it knows nothing about I/O, nor about
`dhaga.sync`'s locks.
"""

from __future__ import annotations

import heapq
import queue as _stdqueue
import threading
from collections import deque
from typing import Any, Generic, TypeVar

from ._waiting import _get_ident, _me, _remove, _Ticket, _wake
from .errors import Timeout
from .handle import PARKED, RUNNING, TIMED_OUT, _Waiter
from .scheduler import Scheduler, _local

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full", "ShutDown"]

Empty = _stdqueue.Empty
Full = _stdqueue.Full

if hasattr(_stdqueue, "ShutDown"):  # Python 3.13+
    ShutDown = _stdqueue.ShutDown
else:
    class ShutDown(Exception):  # type: ignore[no-redef]
        """Raised by a `Queue` that was shut down (``queue.ShutDown`` from Python 3.13)."""


T = TypeVar("T")


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

        Args:
            item: the item to queue.
            block: wait for a free slot; False raises `Full` at once when there is none.
            timeout: with ``block``, seconds to wait at most; None waits forever.

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
        """Return an item if one is queued, else raise `Empty`.

        Returns:
            the next item.

        Raises:
            Empty: no item is queued.
            ShutDown: the queue was shut down and is empty.
        """
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

        Args:
            timeout: seconds to wait at most; None waits forever.

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

        Args:
            immediate: also drop the queued items; getters then raise `ShutDown` at once.
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
