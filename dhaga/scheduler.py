"""The core's public face: spawn, sleep, current, run, and the scheduler's public names.

The core itself is the package `dhaga._core`: the kernel (`Scheduler`: the run queue, parking
and waking), the worker greenlets, each thread's scheduler and the choice of event loop, the
timers, the `Dhaga` handle and the parking API. A module global is read by its own module's
code: to change one (in a test), set it on that module (``dhaga._core.kernel.DRAIN_EXTRA``,
``dhaga._core.workers.MAX_IDLE_WORKERS``).

This module must not know how the scheduler runs dhagas; nor about sockets, protocols, or any
primitive built on parking.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

from ._core import (  # noqa: F401 - re-exported: the public face and a few shared names
    Dhaga,
    Scheduler,
    _local,
    _Worker,
    get_scheduler,
    reset_scheduler,
    use_loop,
)
from ._core import threads as _threads
from ._core.parking import sleep
from .errors import BlockingError, Killed, Timeout  # noqa: F401 - the core's errors

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
    # `use_loop` rebinds these in `dhaga._core.threads`: a copy made at import would go stale.
    if name in ("_loop_factory", "_explicit_loop"):
        return getattr(_threads, name)
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
