"""Parking dhagas until a file descriptor is readable or writable.

How this works
--------------
The process keeps one `_Watcher` per file descriptor that some dhaga has waited on. A watcher
has a *reader slot* and a *writer slot*, each holding at most one parked waiter: two dhagas
reading the same descriptor at once is an error (`ConcurrentUseError`), as in gevent.

A watcher registers itself with its scheduler's asyncio loop (``loop.add_reader`` /
``add_writer``; Tornado's ``IOLoop.add_handler`` is a thin wrapper over exactly these) lazily,
on the first wait, and stays registered while waits keep coming: a socket that is read in a
loop costs no ``epoll_ctl`` per read. When the loop reports the descriptor ready and the slot
is empty, nobody wants the event, so the registration is dropped then (a level-triggered
readable descriptor nobody reads would otherwise spin the loop). A ready event whose waiter was
already woken but has not run yet is ignored.

Waking: the ready callback wakes the dhaga for I/O (`dhaga._core.parking.wake_now`), which
runs it before the loop polls again, in one batch with every other dhaga the same poll made
ready (see `wake_now`). The dhaga consumes the data before the next poll, so asyncio's
level-triggered poll does not report the descriptor a second time (a stale event that would
wake the dhaga again for nothing), and a poll that finds many descriptors ready costs one batch,
not one per descriptor.

Descriptors we do not own (`wait_readable` on a raw fd from another library) are unregistered
after every wait: their owner may close them without telling us, and a registration left on a
closed, then reused, descriptor would miss events or confuse the loop. Our sockets call
`notify_close` before closing, which wakes their waiters with ``EBADF`` (the standard library's
error for a closed socket) and removes the registration while the number still names them.

A slot holds the parked waiter's ticket (`dhaga._core.parking`); this module parks and wakes
only through that API, and knows the loop's reader/writer registration; it knows nothing about
sockets.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from typing import Any, Iterable

from .._core.parking import ReadySlots, park, ticket, wake
from .._core.threads import get_scheduler
from ..errors import ConcurrentUseError, Timeout

__all__ = [
    "ConcurrentUseError",
    "wait_readable",
    "wait_writable",
    "wait_fd",
    "wait_any",
    "notify_close",
    "fileno_of",
    "seen_readable",
]

_get_ident = threading.get_ident




def _ebadf() -> OSError:
    return OSError(errno.EBADF, os.strerror(errno.EBADF))


class _FdWait:
    """What a dhaga waiting on a file descriptor waits on, as ``dhaga.dump()`` shows it."""

    __slots__ = ("fd", "direction")

    def __init__(self, fd: int, direction: str) -> None:
        self.fd = fd
        self.direction = direction

    def __repr__(self) -> str:
        return f"fd {self.fd} ({self.direction})"


class _Watcher(ReadySlots):
    """The reader and writer slots of one file descriptor on one scheduler's loop."""

    __slots__ = ("fd", "loop", "r_on", "w_on", "closed", "r_what", "w_what", "r_seen",
                 "__weakref__")

    def __init__(self, fd: int, sched: Any) -> None:
        ReadySlots.__init__(self, sched)  # the parked reader's and writer's tickets
        self.fd = fd
        self.loop = sched.loop
        self.r_on = False
        self.w_on = False
        self.closed = False
        self.r_what = _FdWait(fd, "read")
        self.w_what = _FdWait(fd, "write")
        self.r_seen = False  # a green select/poll has just reported it readable (see seen_readable)

    def __repr__(self) -> str:
        return f"<_Watcher fd={self.fd} reader={self.reader!r} writer={self.writer!r}>"

    def _dhaga_can_wake(self) -> bool:
        """For `dhaga.Deadlock`: a registration nobody waits on cannot wake anyone."""
        return self.reader is not None or self.writer is not None

    # Loop callbacks: they run on the scheduler's own thread.
    # ReadySlots.on_readable/on_writable are the loop callbacks; see "Waking" above.
    def drop_reader(self) -> None:
        self.r_on = False
        self.loop.remove_reader(self.fd)

    def drop_writer(self) -> None:
        self.w_on = False
        self.loop.remove_writer(self.fd)

    def wait_read(self) -> None:
        """`wait` for reading without a timeout, keeping the registration: the hot path.

        The caller is a dhaga of the watcher's scheduler, on its thread.
        """
        if self.reader is not None:
            self.wait(False, None)  # a concurrent reader: the general path raises
            return
        if not self.r_on:
            self.loop.add_reader(self.fd, self.on_readable)
            self.r_on = True
        self.park_reader(self.r_what)

    def wait_read_timed(self, timeout: float) -> bool:
        """`wait_read` with a timeout (seconds, > 0): False if it expired first."""
        if self.reader is not None:
            return self.wait(False, timeout)  # a concurrent reader: the general path raises
        if not self.r_on:
            self.loop.add_reader(self.fd, self.on_readable)
            self.r_on = True
        return self.park_reader_timed(timeout, self.r_what)

    def wait(self, write: bool, timeout: float | None, keep: bool = True) -> bool:
        """Park the caller until the descriptor is ready; False on timeout."""
        mine = ticket()
        if write:
            if self.writer is not None:
                raise ConcurrentUseError(f"another dhaga is already waiting to write fd {self.fd}")
            self.writer = mine
            if not self.w_on:
                self.loop.add_writer(self.fd, self.on_writable)
                self.w_on = True
            try:
                return park(mine, timeout, False, self.w_what) is not False
            finally:
                self.writer = None
                if not keep and self.w_on and not self.loop.is_closed():
                    self.w_on = False
                    self.loop.remove_writer(self.fd)
        if self.reader is not None:
            raise ConcurrentUseError(f"another dhaga is already waiting to read fd {self.fd}")
        self.reader = mine
        if not self.r_on:
            self.loop.add_reader(self.fd, self.on_readable)
            self.r_on = True
        try:
            return park(mine, timeout, False, self.r_what) is not False
        finally:
            self.reader = None
            if not keep and self.r_on and not self.loop.is_closed():
                self.r_on = False
                self.loop.remove_reader(self.fd)

    def close(self) -> None:
        """Drop the loop registrations and wake both slots with EBADF (on the owner thread)."""
        self.closed = True
        if self.r_on:
            self.r_on = False
            self.loop.remove_reader(self.fd)
        if self.w_on:
            self.w_on = False
            self.loop.remove_writer(self.fd)
        for t in (self.reader, self.writer):
            if t is not None:
                wake(t, None, _ebadf())


#: Every live watcher in the process, by file descriptor (descriptor numbers are process-wide).
#: Weak, like every other wake-up source: a watcher lives while the loop holds its callback, a
#: parked dhaga waits on it, or its socket keeps it (our sockets do, so that closing one always
#: finds and unregisters it). A dropped scheduler's parked dhagas are not kept alive from here.
_watchers: weakref.WeakValueDictionary[int, _Watcher] = weakref.WeakValueDictionary()


def watcher_for(fd: int, sched: Any) -> _Watcher:
    """The watcher of ``fd`` for ``sched``, made on first use."""
    w = _watchers.get(fd)
    if w is not None and w.sched is sched:
        return w
    if w is not None:
        # Used from another thread's scheduler before: move it here when it is idle.
        if w.reader is not None or w.writer is not None:
            raise ConcurrentUseError(f"fd {fd} is being waited on by a dhaga of another thread")
        _close_watcher(w)
    w = _watchers[fd] = _Watcher(fd, sched)
    return w


def _close_watcher(w: _Watcher) -> None:
    w.closed = True
    if w.sched._thread_id == _get_ident() or w.loop.is_closed():
        if not w.loop.is_closed():
            w.close()
    else:
        w.sched.call_threadsafe(w.close)


def notify_close(fd: int) -> None:
    """Tell dhaga that ``fd`` is about to be closed: wake its waiters with EBADF, unregister it.

    Our sockets call this themselves; call it before closing a descriptor you passed to
    `wait_readable`/`wait_writable` from another library while a dhaga may still wait on it.

    Args:
        fd: the descriptor about to be closed.
    """
    w = _watchers.pop(fd, None)
    if w is not None:
        _close_watcher(w)


def fileno_of(fd: Any) -> int:
    """The descriptor number of an int or of an object with ``fileno()``."""
    if isinstance(fd, int):
        return fd
    return int(fd.fileno())


def wait_fd(fd: int, write: bool, timeout: float | None, keep: bool = True) -> bool:
    """Park until ``fd`` is ready; True if it is, False when ``timeout`` expired."""
    return watcher_for(fd, get_scheduler()).wait(write, timeout, keep)


def wait_readable(fd: Any, timeout: float | None = None) -> None:
    """Park the caller until ``fd`` (an int or an object with ``fileno()``) is readable.

    For integrating other libraries (a psycopg wait callback, a driver's own socket). The
    registration is not kept after the wait, since the descriptor's owner may close it.

    Args:
        fd: a file descriptor, or an object with ``fileno()``.
        timeout: seconds to wait at most; None waits forever.

    Raises:
        Timeout: ``timeout`` seconds passed first.
        ConcurrentUseError: another dhaga is already waiting to read it.
        OSError: EBADF, when it was closed (through `notify_close`) during the wait.
    """
    if not wait_fd(fileno_of(fd), False, timeout, keep=False):
        raise Timeout(f"fd not readable within {timeout}s", timeout)


def wait_writable(fd: Any, timeout: float | None = None) -> None:
    """Park the caller until ``fd`` is writable; see `wait_readable`.

    Args:
        fd: a file descriptor, or an object with ``fileno()``.
        timeout: seconds to wait at most; None waits forever.

    Raises:
        Timeout: ``timeout`` seconds passed first.
        ConcurrentUseError: another dhaga is already waiting to write it.
        OSError: EBADF, when it was closed (through `notify_close`) during the wait.
    """
    if not wait_fd(fileno_of(fd), True, timeout, keep=False):
        raise Timeout(f"fd not writable within {timeout}s", timeout)


def wait_any(
    readers: Iterable[int], writers: Iterable[int], timeout: float | None, keep: bool = False
) -> bool:
    """Park until any of the descriptors is ready (for green ``select``/``poll``).

    Without ``keep``, the loop registrations this call made are dropped when it ends; those
    that were already there (a green socket keeps its own) are left as they were.

    Returns:
        True when one became ready, False when ``timeout`` expired.
    """
    sched = get_scheduler()
    mine = ticket()
    taken: list[tuple[_Watcher, bool, bool]] = []  # (watcher, write, registered by this call)
    try:
        for write, fds in ((False, readers), (True, writers)):
            for fd in fds:
                w = watcher_for(fd, sched)
                if write:
                    if w.writer == mine:
                        continue
                    if w.writer is not None:
                        raise ConcurrentUseError(f"another dhaga is already waiting to write fd {fd}")
                    w.writer = mine
                    added = not w.w_on
                    taken.append((w, True, added))
                    if added:
                        w.loop.add_writer(fd, w.on_writable)
                        w.w_on = True
                else:
                    if w.reader == mine:
                        continue
                    if w.reader is not None:
                        raise ConcurrentUseError(f"another dhaga is already waiting to read fd {fd}")
                    w.reader = mine
                    added = not w.r_on
                    taken.append((w, False, added))
                    if added:
                        w.loop.add_reader(fd, w.on_readable)
                        w.r_on = True
        return park(mine, timeout, False,
                    [w.w_what if write else w.r_what for w, write, _ in taken])
    finally:
        for w, write, added in taken:
            if write:
                w.writer = None
                if added and not keep and w.w_on and not w.loop.is_closed():
                    w.w_on = False
                    w.loop.remove_writer(w.fd)
            else:
                w.reader = None
                if added and not keep and w.r_on and not w.loop.is_closed():
                    w.r_on = False
                    w.loop.remove_reader(w.fd)


def seen_readable(fd: int) -> None:
    """A green ``select``/``poll`` has just reported ``fd`` readable: a hint for its socket.

    A green socket whose last read was short waits for readiness before reading again (see
    `dhaga._io.greensocket`); after its owner was told by ``select``/``poll`` that data is
    there, that wait would only cost a trip through the loop, so the socket reads at once.
    """
    w = _watchers.get(fd)
    if w is not None:
        w.r_seen = True
