"""``to_thread``: run truly blocking functions (C calls, file I/O) in a bounded real thread pool.

The calling dhaga parks while the thread works; other dhagas keep running. This module knows
the scheduler's parking rules and `concurrent.futures`, nothing else.
"""

from __future__ import annotations

import contextvars
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from ._core import deadlock as _deadlock
from ._core.parking import Waiting, current_waiter, park, ticket, wake_soon

__all__ = ["to_thread", "set_thread_pool_size", "thread_pool_size"]

T = TypeVar("T")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_busy: set = set()  # futures of work not yet finished: a wake may still come (see Deadlock)
_size = int(os.environ.get("DHAGA_THREADPOOL_SIZE", "0")) or min(32, (os.cpu_count() or 1) + 4)


def thread_pool_size() -> int:
    """How many real threads `to_thread` may use at once.

    Returns:
        the current size of `to_thread`'s pool.
    """
    return _size


def set_thread_pool_size(size: int) -> None:
    """Set how many real threads `to_thread` may use (default: min(32, CPUs + 4)).

    Takes effect at once: the current pool finishes its work and a new one is made.

    Args:
        size: the number of threads, at least 1.

    Raises:
        ValueError: ``size`` is less than 1.
    """
    global _pool, _size
    if size < 1:
        raise ValueError("the thread pool needs at least one thread")
    with _lock:
        old, _pool, _size = _pool, None, size
    if old is not None:
        old.shutdown(wait=False)


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    pool = _pool
    if pool is None:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(_size, thread_name_prefix="dhaga-to_thread")
            pool = _pool
    return pool


def to_thread(fn: Callable[..., T], *args: Any, timeout: float | None = None, **kw: Any) -> T:
    """Run ``fn(*args, **kw)`` in a real thread; the caller's dhaga waits without blocking others.

    The function runs in a copy of the caller's contextvars context. If the wait ends by
    timeout or kill, the thread cannot be stopped: it finishes and its result is dropped.

    Args:
        fn: the truly blocking function (C library, file I/O).
        *args: positional arguments for ``fn``.
        timeout: seconds to wait at most; None waits forever.
        **kw: keyword arguments for ``fn``.

    Returns:
        what ``fn`` returned; its exception is re-raised.

    Raises:
        Timeout: ``timeout`` seconds passed first.
        BlockingError: called in a coroutine or callback on the event loop.
    """
    current_waiter()  # BlockingError in a coroutine, also when fn would finish at once
    ctx = contextvars.copy_context()
    fut: Future = _get_pool().submit(ctx.run, fn, *args, **kw)  # may park (patched locks)
    _busy.add(fut)
    try:
        if not fut.done():
            mine = ticket()  # taken after anything that may park, or the ticket would be stale
            # Always delivered through the loop, so a completion racing with park is never
            # lost; addressed to this park only, so it cannot wake a later one after a timeout.
            fut.add_done_callback(lambda _: wake_soon(mine))
            try:
                park(mine, timeout, on=Waiting("to_thread", fn))
            except BaseException:
                fut.cancel()
                raise
    finally:
        fut.add_done_callback(_busy.discard)  # after the wake is on its way, never before
    return fut.result()


def _idle_pool_thread(thread: threading.Thread) -> bool:
    """For `dhaga.Deadlock`: a thread of `to_thread`'s pool with no work can wake nobody."""
    return thread.name.startswith("dhaga-to_thread") and not _busy


_deadlock.add_quiet_thread_check(_idle_pool_thread)
