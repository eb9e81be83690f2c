"""Green ``select.select``, ``select.poll`` and a selector on top of them, for `dhaga.monkey`.

How this works
--------------
Each call first asks the real ``select``/``poll`` with a zero timeout (no waiting, the exact
answer the standard library would give); only if nothing is ready does the dhaga park on the
reader/writer slots of every descriptor at once (`dhaga._io.fdwait.wait_any`), then it asks again.
Where parking is impossible (a coroutine or callback on the event loop, or a plain thread that
never used dhaga), the real blocking call is made, as before patching.

A ``poll`` object works out the descriptors to wait on once after they change, not on every
call (kombu's event loop polls once per message). Descriptors reported readable are noted
(`dhaga._io.fdwait.seen_readable`), so that a green socket among them reads at once instead
of waiting for readiness it has just been told about.

This module knows `dhaga._io.fdwait` and the standard library's ``select``/``selectors``; it does not
patch anything itself.
"""

from __future__ import annotations

import select as _select
import selectors as _selectors
import threading
from asyncio.events import _get_running_loop
from time import monotonic
from typing import Any, Iterable

from .. import scheduler as _scheduler
from .._io.fdwait import fileno_of, seen_readable, wait_any

__all__ = ["select", "poll", "GreenSelector", "must_block_thread"]

_std_select = _select.select
_std_poll = _select.poll
_main_thread = threading.main_thread()
_current_thread = threading.current_thread
_READ_MASK = _select.POLLIN | _select.POLLPRI
_WRITE_MASK = _select.POLLOUT


def must_block_thread() -> bool:
    """True where a patched call must block for real instead of parking.

    That is: in a coroutine or callback on a running event loop (parking would raise
    `BlockingError`), or at the top level of a thread other than the main one that never used
    dhaga (parking there would start a whole event loop for one call).
    """
    sched = getattr(_scheduler._local, "sched", None)
    if sched is not None and sched._current is not None:
        return False  # in a dhaga
    if _get_running_loop() is not None:
        return True
    return sched is None and _current_thread() is not _main_thread


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - monotonic())


def select(rlist: Iterable[Any], wlist: Iterable[Any], xlist: Iterable[Any],
           timeout: float | None = None) -> tuple[list, list, list]:
    """`select.select`, parking the dhaga instead of the thread.

    Descriptors in ``xlist`` are reported when the real ``select`` says so, but are not waited
    on by themselves (exceptional conditions come with readability on sockets in practice).
    """
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be non-negative")
    rlist, wlist, xlist = list(rlist), list(wlist), list(xlist)
    ready = _std_select(rlist, wlist, xlist, 0)
    if ready[0] or ready[1] or ready[2] or timeout == 0:
        return _noted(ready)
    if must_block_thread():
        return _std_select(rlist, wlist, xlist, timeout)
    readers = [fileno_of(o) for o in rlist]
    writers = [fileno_of(o) for o in wlist]
    deadline = None if timeout is None else monotonic() + timeout
    while True:
        woken = wait_any(readers, writers, _left(deadline))
        ready = _std_select(rlist, wlist, xlist, 0)
        if ready[0] or ready[1] or ready[2] or not woken:
            return _noted(ready)


def _noted(ready: tuple[list, list, list]) -> tuple[list, list, list]:
    for obj in ready[0]:
        seen_readable(fileno_of(obj))
    return ready


class poll:  # noqa: N801 - the standard library's name
    """`select.poll`, parking the dhaga instead of the thread (timeouts in milliseconds)."""

    def __init__(self) -> None:
        self._poll = _std_poll()
        self._masks: dict[int, int] = {}
        self._readers: list[int] | None = []  # what a wait parks on; None: work it out again
        self._writers: list[int] = []

    def register(self, fd: Any, eventmask: int = _READ_MASK | _WRITE_MASK) -> None:
        fd = fileno_of(fd)
        self._poll.register(fd, eventmask)
        self._masks[fd] = eventmask
        self._readers = None

    def modify(self, fd: Any, eventmask: int) -> None:
        fd = fileno_of(fd)
        self._poll.modify(fd, eventmask)
        self._masks[fd] = eventmask
        self._readers = None

    def unregister(self, fd: Any) -> None:
        fd = fileno_of(fd)
        self._poll.unregister(fd)
        del self._masks[fd]
        self._readers = None

    def _sort(self) -> list[int]:
        masks = self._masks
        self._writers = [fd for fd, m in masks.items() if m & _WRITE_MASK]
        readers = self._readers = [fd for fd, m in masks.items() if m & _READ_MASK or not m & _WRITE_MASK]
        return readers

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        if timeout is not None and timeout < 0:
            timeout = None  # poll's spelling of "forever"
        ready = self._poll.poll(0)
        if not ready and timeout != 0:
            if must_block_thread():
                return self._poll.poll(timeout)
            deadline = None if timeout is None else monotonic() + timeout / 1000.0
            while True:
                readers = self._readers
                if readers is None:
                    readers = self._sort()
                woken = wait_any(readers, self._writers, _left(deadline))
                ready = self._poll.poll(0)
                if ready or not woken:
                    break
        for fd, events in ready:
            if events & _READ_MASK:
                seen_readable(fd)
        return ready


class GreenSelector(_selectors.PollSelector):
    """A `selectors` selector whose ``select`` parks the dhaga (built on the green `poll`)."""

    _selector_cls = poll  # type: ignore[assignment]
