"""The core's public calls (spawn, sleep, current, run), and the face of the core's modules.

`dhaga._kernel` holds the `Scheduler` (the run queue, parking and waking), `dhaga._workers` the
greenlets that run dhagas, and `dhaga._thread_schedulers` each thread's scheduler and the choice
of event loop; `dhaga.handle` the `Dhaga` handle and its states. The public names, and the few
internal ones the primitives share (`wake`, `_local`), are re-exported here; anything else is
imported from its own module. A module global is read by its own module's code: to change one (in a test),
set it on that module (``dhaga._kernel.DRAIN_EXTRA``, ``dhaga._workers.MAX_IDLE_WORKERS``).

This module must not know how the scheduler runs dhagas, except for the fast path of `sleep(0)`
inlined below; nor about sockets, protocols, or any primitive built on parking.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

from . import _thread_schedulers
from ._kernel import Scheduler, wake  # noqa: F401 - wake: re-exported for the primitives
from ._thread_schedulers import (  # noqa: F401 - re-exported
    _local,
    get_scheduler,
    reset_scheduler,
    use_loop,
)
from ._workers import _Worker
from .errors import BlockingError, Killed, Timeout  # noqa: F401 - the core's errors
from .handle import PARKED, Dhaga

Scheduler.__module__ = "dhaga"  # shown as `dhaga.Scheduler`, where users find it

__all__ = [
    "Dhaga",
    "Scheduler",
    "get_scheduler",
    "spawn",
    "spawn_later",
    "sleep",
    "current",
    "run",
    "use_loop",
]

log = logging.getLogger("dhaga")


def __getattr__(name: str) -> Any:
    # `use_loop` rebinds these in `_thread_schedulers`: a copy made at import would go stale.
    if name in ("_loop_factory", "_explicit_loop"):
        return getattr(_thread_schedulers, name)
    raise AttributeError(f"module 'dhaga.scheduler' has no attribute {name!r}")


# ---------------------------------------------------------------------- module functions
def spawn(fn: Callable[..., Any], *args: Any, **kw: Any) -> Dhaga:
    """Start ``fn(*args, **kw)`` in a new dhaga; it runs at the next scheduling point.

    Works in a dhaga, at top level, and in a coroutine or callback on the loop thread.

    Args:
        fn: the function to run.
        *args: positional arguments for ``fn``.
        **kw: keyword arguments for ``fn``.

    Returns:
        the new `Dhaga`.
    """
    return get_scheduler().spawn(fn, *args, **kw)


def spawn_later(seconds: float, fn: Callable[..., Any], *args: Any, **kw: Any) -> Dhaga:
    """Like `spawn`, but the dhaga starts after ``seconds``.

    Args:
        seconds: the delay before ``fn`` starts.
        fn: the function to run.
        *args: positional arguments for ``fn``.
        **kw: keyword arguments for ``fn``.

    Returns:
        the new `Dhaga`; killing it before the delay ends means ``fn`` never runs.
    """

    def _delayed() -> Any:
        sleep(seconds)
        return fn(*args, **kw)

    d = spawn(_delayed)
    d._name = f"{getattr(fn, '__name__', 'Dhaga')}-later-{d._id}"
    return d


def sleep(seconds: float = 0) -> None:
    """Suspend the caller for ``seconds``; ``sleep(0)`` lets every other runnable dhaga run once.

    Args:
        seconds: how long to sleep; 0 or less only yields.

    Raises:
        BlockingError: called in a coroutine or callback on the event loop.
    """
    if seconds <= 0:
        sched = getattr(_local, "sched", None)
        if sched is not None:
            d = sched._current
            if d is not None and sched._batch > 0 and d._pending_exc is None:
                # A dhaga yielding within a batch: to the back of the run queue, and on with the
                # next runnable one; with none, it goes on at once. Each yield uses up a slot
                # of the batch, so a loop of sleep(0) alone still lets the loop poll.
                sched._batch -= 1
                runq = sched._runq
                if not runq:  # nobody else is runnable: go on at once
                    return
                d._resume_value = d._resume_exc = None
                runq.append(d)
                sched._batch += 1  # _switch_next counts this switch
                sched._switch_next()
                d._take_resume()
                return
    sched = get_scheduler()
    waiter = sched.waiter()
    exc = waiter._pending_exc
    if exc is not None:
        waiter._pending_exc = None
        raise exc
    waiter._state = PARKED
    if seconds <= 0:
        if waiter is sched._top:
            if sched._runq and not sched._drain_pending:  # others run first, then we return
                sched._drain_pending = True
                sched._call_soon(sched._drain)
            sched._call_soon(sched._unpark, waiter)
        else:
            sched._unpark(waiter)
        sched._suspend(waiter)
        waiter._take_resume()
        return
    handle = sched._call_later(seconds, sched._unpark, waiter)
    sched._suspend(waiter)
    if waiter._resume_exc is not None:
        handle.cancel()
    waiter._take_resume()


def current() -> Dhaga | None:
    """The running dhaga, or None outside any dhaga."""
    sched = getattr(_local, "sched", None)
    if sched is None:
        return None
    return sched._current


def run(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run ``fn`` in a dhaga, driving this thread's loop until it returns.

    Args:
        fn: the function to run.
        *args: positional arguments for ``fn``.
        **kw: keyword arguments for ``fn``.

    Returns:
        its value; its exception is re-raised.

    Raises:
        BlockingError: called in a coroutine or callback on this thread's running loop.
        BaseException: whatever ``fn`` raised.
    """
    return get_scheduler().spawn(fn, *args, **kw).result()


def format_stacks() -> str:
    """Every live dhaga's stack on every thread, for debugging hangs."""
    import gc

    out = []
    for obj in gc.get_objects():
        if isinstance(obj, _Worker) and obj.task is not None and obj.gr_frame is not None:
            task = obj.task
            out.append(f"--- {task!r} (thread {task._sched.thread_id})\n")
            out.extend(traceback.format_stack(obj.gr_frame))
    return "".join(out) or "(no dhaga is suspended)\n"
