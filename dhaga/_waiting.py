"""Tickets: how a dhaga or a thread queues in a primitive and is woken from any thread.

How this works
--------------
Every primitive (`dhaga.sync`, `dhaga.queues`) keeps its waiters as *tickets* ``(waiter, gen)``
in FIFO order and guards them with a small real mutex, so the same object also works between
dhagas of different OS threads and plain threads (each side parks on its own scheduler; a
wake-up crosses threads through the loop's thread-safe callback, addressed to one park by
``gen``).

A waiter woken with a value always receives it (a later kill is delivered at its next blocking
point), so handed-over permits and items cannot vanish between the wake-up and the waiter.

This module knows the scheduler's parking rules; it knows nothing about any primitive's state,
nor about I/O.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from .handle import _Waiter
from .scheduler import Scheduler, _local, get_scheduler

_Ticket = tuple  # (waiter, gen)
_get_ident = threading.get_ident


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


def _remove(mutex: Any, waiters: deque, ticket: _Ticket) -> bool:
    """Take ``ticket`` out of ``waiters``; False if someone already took it (it was served)."""
    with mutex:
        try:
            waiters.remove(ticket)
        except ValueError:
            return False
    return True
