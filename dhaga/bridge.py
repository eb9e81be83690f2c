"""Bridges between dhagas and asyncio/Tornado: ``wait`` on awaitables, ``green`` for async code.

This module knows the scheduler's parking rules and asyncio futures, nothing about I/O.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from asyncio.events import _get_running_loop
from typing import Any, Awaitable, Callable, TypeVar

from ._core.parking import park, ticket, wake
from .scheduler import get_scheduler

__all__ = ["wait", "green"]

T = TypeVar("T")


def wait(awaitable: Awaitable[T] | concurrent.futures.Future, timeout: float | None = None) -> T:
    """Block the current dhaga (or top-level code) until ``awaitable`` completes.

    Accepts an asyncio or Tornado future, a coroutine or any awaitable (run as a Task on this
    thread's loop), or a `concurrent.futures.Future`. A Task that `wait` created is cancelled
    if the wait ends by timeout or kill; a future passed in is left alone (others may share it).

    Args:
        awaitable: an asyncio or Tornado future, a coroutine or other awaitable, or a
            `concurrent.futures.Future`.
        timeout: seconds to wait at most; None waits forever.

    Returns:
        the awaitable's result; its exception is re-raised.

    Raises:
        Timeout: ``timeout`` seconds passed first.
        BlockingError: called in a coroutine or callback on the event loop.
    """
    sched = get_scheduler()
    sched.waiter()  # BlockingError now, before a task is made, when called on the loop
    loop = sched.loop
    created = False
    if isinstance(awaitable, concurrent.futures.Future):
        fut: asyncio.Future = asyncio.wrap_future(awaitable, loop=loop)
        created = True
    elif asyncio.isfuture(awaitable):
        fut = awaitable  # type: ignore[assignment]
    elif inspect.isawaitable(awaitable):
        fut = asyncio.ensure_future(awaitable, loop=loop)
        created = True
    else:
        raise TypeError(f"dhaga.wait() needs a future, coroutine or awaitable, not {type(awaitable).__name__}")
    if not fut.done():
        mine = ticket()

        def _wake(_: asyncio.Future) -> None:
            wake(mine)  # the future may belong to another thread's loop

        fut.add_done_callback(_wake)
        try:
            park(mine, timeout, on=fut)
        except BaseException:
            if created and not fut.done():
                fut.cancel()
            raise
        finally:
            fut.remove_done_callback(_wake)
    return fut.result()


def green(fn: Callable[..., T]) -> Callable[..., Any]:
    """Decorator: make a blocking-style function callable from async code.

    Called from a coroutine or callback on the event loop (a Tornado ``RequestHandler``
    method, an asyncio task), the decorated function starts ``fn`` in a new dhaga and returns
    the `Dhaga`, which the caller awaits for the result. Called from a dhaga or from top-level
    code, where blocking is already allowed, it simply calls ``fn``.

    Args:
        fn: a blocking-style function.

    Returns:
        a wrapper with ``fn``'s name and signature: from async code it returns a `Dhaga` to
        await; elsewhere it returns ``fn``'s result.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        sched = get_scheduler()
        if sched._current is None and _get_running_loop() is not None:
            return sched.spawn(fn, *args, **kw)
        return fn(*args, **kw)

    wrapper.__dhaga_green__ = True  # type: ignore[attr-defined]
    return wrapper
