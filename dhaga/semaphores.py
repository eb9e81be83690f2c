"""Counting semaphores for dhagas and threads: `threading.Semaphore`'s and `BoundedSemaphore`'s interface.

Waiters are served FIFO and a release *hands over* a permit to the first waiter (see
`dhaga._core.parking` for tickets and waking across threads): a waiter that finds, as it leaves
early, that its ticket was taken owns a permit; on a timeout it keeps it, when killed it
releases it to the next waiter. Re-exported by `dhaga.sync`.

This module parks only through `dhaga._core.parking`; it knows nothing about I/O.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from ._core.parking import Ticket as _Ticket
from ._core.parking import park, ticket, wake
from ._core.parking import remove as _remove

__all__ = ["Semaphore", "BoundedSemaphore"]


class Semaphore:
    """A counter of permits; `threading.Semaphore`'s interface, FIFO, hand-over on release.

    Args:
        value: the initial number of permits.

    Raises:
        ValueError: ``value`` is negative.
    """

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

        Args:
            blocking: wait for a permit if none is free; False returns at once.
            timeout: with ``blocking``, seconds to wait at most; None waits forever.

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
        mine = ticket()
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._value:  # released since we looked (another thread)
                self._value -= 1
                return True
            self._waiters.append(mine)
        finally:
            mutex.release()
        try:
            if park(mine, timeout, False, self):
                return True
        except BaseException:
            if not _remove(self._mutex, self._waiters, mine):
                self._release_one()  # handed over as we were killed: pass it on
            raise
        return not _remove(self._mutex, self._waiters, mine)

    def __enter__(self) -> bool:
        return self.acquire()

    def _release_one(self) -> None:
        mutex = self._mutex
        mutex.acquire()
        try:
            if not self._waiters:
                self._value += 1
                return
            t = self._waiters.popleft()
        finally:
            mutex.release()
        wake(t, True)

    def release(self, n: int = 1) -> None:
        """Return ``n`` permits, handing each to the longest waiter if there is one.

        Args:
            n: how many permits to return, at least 1.

        Raises:
            ValueError: ``n`` is less than 1.
        """
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

    Args:
        value: the initial, and largest, number of free permits.
    """

    __slots__ = ("_initial",)

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value

    def release(self, n: int = 1) -> None:
        """Return ``n`` permits.

        Args:
            n: how many permits to return, at least 1.

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
