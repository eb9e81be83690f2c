"""The core: the kernel (run queue, batches), worker greenlets, per-thread schedulers, timers,
the `Dhaga` handle's internals and the parking API.

The only package that imports ``greenlet``, switches between greenlets, or changes a
scheduler's state; everything else waits and wakes through `dhaga._core.parking`. Its modules,
from the bottom up: ``states`` (a dhaga's states, the waiter), ``timers``, ``threads`` (each
thread's scheduler), ``workers``, ``handle`` (`Dhaga`), ``kernel`` (`Scheduler`), ``parking``.
It must not know about sockets, protocols or any primitive built on parking.
"""

from __future__ import annotations

from .handle import Dhaga
from .kernel import DRAIN_EXTRA, Scheduler
from .threads import _local, get_scheduler, reset_scheduler, use_loop
from .workers import MAX_IDLE_WORKERS, _Worker

__all__ = [
    "DRAIN_EXTRA",
    "MAX_IDLE_WORKERS",
    "Dhaga",
    "Scheduler",
    "_Worker",
    "_local",
    "get_scheduler",
    "reset_scheduler",
    "use_loop",
]
