"""How the scheduler takes over asyncio's poll: one drain per poll, epoll read directly.

asyncio's selector loops poll, queue a handle per ready descriptor, run the ready queue, and
poll again. The scheduler hooks two places (`PollHooks._hook_poll`):

- ``_process_events`` (called right after each poll, before the ready callbacks run): it queues
  one drain of the run queue behind that poll's callbacks, so that what they wake runs in one
  batch before the next poll (a drain queued with ``call_soon`` from a callback would wait for
  the next poll, which reports again every descriptor not yet read).
- on Linux's epoll selector, the poll itself (`PollHooks._poll_epoll`): ``_process_events`` gets
  epoll's own ``(fd, events)`` list instead of the selector's list of keys, and calls the
  readiness callbacks registered with `register_direct` (the descriptor waits of
  `dhaga._io.fdwait`, which only put a dhaga on the run queue) right there: no key list, no
  handle queued and run per event, no context entered. ``ReadySlots.on_readable`` (the
  commonest: a connection's next request) is written out there. Other callbacks (a user's
  ``add_reader``, Tornado's handlers) still go through asyncio's ready queue, in its order.

uvloop keeps its own dispatch (in C); other selectors keep asyncio's, with the drain hook.
This module knows the scheduler's poll-related slots and the waiter states; it must not know
about sockets or any primitive.
"""

from __future__ import annotations

import asyncio
import select as _select_mod
import selectors
from collections import deque
from math import ceil as _ceil
from types import MethodType as _MethodType
from typing import Any, Callable

from .states import PARKED, RUNNING

__all__ = ["PollHooks", "register_direct"]

# Taken at import: monkey-patching takes epoll out of the selectors module (it is not green).
_EpollSelector = getattr(selectors, "EpollSelector", None)
_NOT_EPOLLOUT = ~_select_mod.EPOLLOUT if hasattr(_select_mod, "EPOLLOUT") else 0
_NOT_EPOLLIN = ~_select_mod.EPOLLIN if hasattr(_select_mod, "EPOLLIN") else 0

#: Readiness callbacks (plain functions, called as bound methods) the scheduler may call from
#: the loop's event processing itself; see `Scheduler._after_poll`.
_DIRECT: set[Callable[..., Any]] = set()
#: The one of them that `Scheduler._after_epoll` writes out (``ReadySlots.on_readable``).
_WAKES_READER: list = [None]


def register_direct(func: Callable[..., Any], wakes_reader: bool = False) -> None:
    """Let the scheduler call ``func``'s bound methods straight from a poll's events.

    For readiness callbacks that only wake dhagas (`dhaga._core.parking.wake_now`) or drop
    their own registration, never raise, and need no context variables. ``wakes_reader``: the
    callback is `dhaga._core.parking.ReadySlots.on_readable`, which the scheduler runs
    written out for a parked dhaga (its object's ``reader`` slot holds ``(waiter, gen)``).
    """
    _DIRECT.add(func)
    if wakes_reader:
        _WAKES_READER[0] = func


def _report(loop: Any, handle: Any, exc: BaseException) -> None:
    """A readiness callback called directly failed: what ``asyncio.Handle._run`` would do."""
    if isinstance(exc, (SystemExit, KeyboardInterrupt)):
        raise exc
    loop.call_exception_handler({
        "message": f"Exception in callback {handle._callback!r}",
        "exception": exc,
        "handle": handle,
    })


class PollHooks:
    """The `Scheduler`'s poll hooks (a mixin: the slots they use are the scheduler's)."""

    __slots__ = ()

    def _hook_poll(self, loop: Any) -> None:
        """On asyncio's selector loops: one batch for what a poll's readiness callbacks wake.

        asyncio runs the callbacks that one poll made ready, then polls again; a drain queued
        by one of them with ``call_soon`` would run only after that next poll, which reports
        again every descriptor not yet read. So the scheduler takes over the loop's
        ``_process_events`` (called right after each poll, before the ready callbacks run) and
        queues one drain behind that poll's callbacks; the wakes of readiness callbacks
        (`dhaga._core.parking.wake_now`) leave their dhagas to it.

        On Linux's epoll selector the scheduler also polls itself (`_poll_epoll`): it hands
        ``_after_poll`` epoll's own ``(fd, events)`` list instead of the selector's list of
        keys, and calls the readiness callbacks registered with `register_direct` right there.
        """
        process = getattr(type(loop), "_process_events", None)
        if process is None or not isinstance(getattr(loop, "_ready", None), deque):
            return
        self._loop_process_events = process.__get__(loop)
        self._poll_handle = asyncio.Handle(self._poll_drain, (), loop)
        sel = self._selector
        if _EpollSelector is not None and type(sel) is _EpollSelector and isinstance(
            getattr(sel, "_fd_to_key", None), dict
        ):
            self._epoll = sel._selector  # type: ignore[union-attr]
            self._fd_to_key = sel._fd_to_key  # type: ignore[union-attr]
            sel.select = self._poll_epoll  # type: ignore[union-attr,method-assign]
            loop._process_events = self._after_epoll
        else:
            loop._process_events = self._after_poll

    def _poll_epoll(self, timeout: float | None = None) -> list:
        """``EpollSelector.select`` without making keys: epoll's ``(fd, events)`` list."""
        if timeout is None:
            timeout = -1
        elif timeout <= 0:
            timeout = 0
        else:  # epoll has millisecond resolution: round up, to wait at least ``timeout``
            timeout = _ceil(timeout * 1e3) * 1e-3
        try:
            return self._epoll.poll(timeout, len(self._fd_to_key) or 1)  # type: ignore[union-attr]
        except InterruptedError:
            return []

    def _after_poll(self, event_list: list) -> None:
        """The loop's ``_process_events`` (a selector other than epoll): then the drain."""
        self._loop_process_events(event_list)  # type: ignore[misc]
        if event_list and not self._in_poll:
            self._in_poll = True
            self.loop._ready.append(self._poll_handle)  # type: ignore[attr-defined]

    def _after_epoll(self, event_list: list) -> None:
        """The loop's ``_process_events`` on epoll: one poll's readiness callbacks, the drain.

        asyncio queues a handle per ready descriptor and runs it in its next pass over the
        ready queue. A callback registered with `register_direct` (the descriptor waits of
        `dhaga._io.fdwait`, which only put a dhaga on the run queue) is called right here
        instead: no handle queued and run, no context entered. What it wakes still runs in the
        drain queued behind every other callback of the poll, so asyncio's order is kept.
        """
        if not event_list:
            return
        loop = self.loop
        queued = self._in_poll  # (never, in asyncio's run order) the last poll's drain waits
        self._in_poll = True
        direct = _DIRECT
        wakes_reader = _WAKES_READER[0]
        keys = self._fd_to_key
        top = self._top
        for fd, ev in event_list:
            key = keys.get(fd)
            if key is None:
                continue
            reader, writer = key.data
            if ev & _NOT_EPOLLOUT and reader is not None:  # readable (or an error/hang-up)
                if reader._cancelled:
                    loop._remove_reader(key.fileobj)  # type: ignore[attr-defined]
                else:
                    cb = reader._callback
                    if type(cb) is _MethodType and cb.__func__ is wakes_reader and (
                        (t := cb.__self__.reader) is not None and (w := t[0]) is not top
                    ):
                        # ReadySlots.on_readable, written out for a parked dhaga (the commonest
                        # event there is: a connection's next request)
                        if w._gen == t[1] and w._state is PARKED:  # else woken already
                            w._state = RUNNING
                            w._resume_value = None
                            self._runq.append(w)
                            self._drain_pending = True  # the poll's drain runs it
                    elif type(cb) is _MethodType and cb.__func__ in direct:
                        try:
                            cb()
                        except BaseException as e:  # as asyncio's Handle._run reports it
                            _report(loop, reader, e)
                    else:
                        loop._add_callback(reader)  # type: ignore[attr-defined]
            if ev & _NOT_EPOLLIN and writer is not None:
                if writer._cancelled:
                    loop._remove_writer(key.fileobj)  # type: ignore[attr-defined]
                else:
                    cb = writer._callback
                    if type(cb) is _MethodType and cb.__func__ in direct:
                        try:
                            cb()
                        except BaseException as e:
                            _report(loop, writer, e)
                    else:
                        loop._add_callback(writer)  # type: ignore[attr-defined]
        if not queued:
            loop._ready.append(self._poll_handle)  # type: ignore[attr-defined]

    def _poll_drain(self) -> None:
        """After one poll's readiness callbacks: run the dhagas they woke."""
        self._in_poll = False
        if self._runq:
            self._drain_pending = True
            self._drain()
