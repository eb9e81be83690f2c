"""Each thread's scheduler, found or created on first use, and the choice of event loop.

How this works
--------------
`get_scheduler()` returns the scheduler kept in the thread-local ``_local.sched``. Normally it
owns the thread's own loop: the loop already set for the thread (by Tornado, or
``asyncio.set_event_loop``), else a new one of the kind chosen by `use_loop`; when the thread
ends, `_ThreadCleanup` closes it. Called in a loop that is running and is not the scheduler's
(``asyncio.run()``'s), it switches to a scheduler that borrows that loop; the one it replaces
waits in ``_local.by_loop`` until its loop runs again, and once the borrowed loop is closed the
thread goes back to the scheduler that owns its loop.

This module must not know how a scheduler runs dhagas, parks or wakes them: it only creates,
finds and closes schedulers, of the class the kernel registers with `set_scheduler_type` (so
the kernel, above it, is never imported from here).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from asyncio.events import _get_running_loop
from typing import Any, Callable

__all__ = ["all_schedulers", "get_scheduler", "reset_scheduler", "use_loop"]

_local = threading.local()
_schedulers: weakref.WeakSet = weakref.WeakSet()  # every scheduler of every thread, for census
#: Called (no arguments, on the new scheduler's thread) as each scheduler is made: instruments.
on_new_scheduler: list[Callable[[], Any]] = []


def all_schedulers() -> list[Any]:
    """Every scheduler still referenced, on every thread (for dumps and the monitor)."""
    return list(_schedulers)
Scheduler: Any = None  # the kernel's class, registered by `set_scheduler_type`


def set_scheduler_type(cls: type) -> None:
    """Register the class of the schedulers made from now on (the kernel's, at its import)."""
    global Scheduler
    Scheduler = cls

_loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
_explicit_loop: type | None = None  # with uvloop chosen, a plain asyncio loop is not adopted


def use_loop(kind: str | Callable[[], asyncio.AbstractEventLoop] = "asyncio") -> None:
    """Choose the event loop that schedulers created from now on will use.

    Args:
        kind: ``"asyncio"`` (the default), ``"uvloop"`` (needs the ``fast`` extra), or a
            factory returning a new event loop. The environment variable ``DHAGA_LOOP``
            sets the initial choice.
    """
    global _loop_factory, _explicit_loop
    if callable(kind):
        _loop_factory = kind
        _explicit_loop = None
    elif kind == "asyncio":
        _loop_factory = asyncio.new_event_loop
        _explicit_loop = None
    elif kind == "uvloop":
        import uvloop
        _loop_factory = uvloop.new_event_loop
        _explicit_loop = uvloop.Loop
    else:
        raise ValueError(f"unknown loop kind {kind!r}: use 'asyncio', 'uvloop' or a factory")


class _ThreadCleanup:
    """Kept in the thread-local state: when the thread ends, its own loop is closed."""

    __slots__ = ("sched",)

    def __init__(self, sched: Any) -> None:
        self.sched = sched

    def __del__(self) -> None:
        sched = self.sched
        if sched._owns_loop and not sched.loop.is_closed() and not sched.loop.is_running():
            try:
                sched.close()
            except Exception:  # noqa: BLE001 - interpreter shutdown; nothing to report to
                pass


def _thread_current_loop() -> asyncio.AbstractEventLoop | None:
    """The loop already set for this thread (by Tornado, or ``asyncio.set_event_loop``), if any.

    Read without `asyncio.get_event_loop`, which would create one (and warn about it).
    """
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    loop = getattr(local, "_loop", None)
    if loop is None or loop.is_closed() or loop.is_running():
        return None
    if _explicit_loop and not isinstance(loop, _explicit_loop):
        return None  # use_loop() chose another kind of loop
    return loop


def _new_scheduler(running: asyncio.AbstractEventLoop | None) -> Any:
    if running is not None:
        sched = Scheduler(running, owns_loop=False)
    else:
        loop = _thread_current_loop()
        if loop is None:
            if _loop_factory is None:
                use_loop(os.environ.get("DHAGA_LOOP", "asyncio") or "asyncio")
            loop = _loop_factory()  # type: ignore[misc]
            asyncio.set_event_loop(loop)
        sched = Scheduler(loop, owns_loop=True)
        _local.__dict__.setdefault("cleanups", []).append(_ThreadCleanup(sched))
    _local.sched = sched
    _schedulers.add(sched)
    for hook in on_new_scheduler:
        hook()
    return sched


def get_scheduler() -> Any:
    """This thread's scheduler (created on first use).

    Inside a running event loop, the scheduler bound to that loop.
    """
    sched: Any | None = getattr(_local, "sched", None)
    if sched is not None and sched._current is not None:
        return sched  # in a dhaga: its scheduler's loop is the one running
    running = _get_running_loop()
    if running is None and sched is not None and not sched._owns_loop and sched.loop.is_closed():
        # The loop this scheduler borrowed (asyncio.run's) is gone: go back to our own.
        owned = _local.__dict__.get("by_loop", {})
        _local.sched = sched = next((s for s in owned.values() if s._owns_loop), None)
        if sched is not None:
            owned.pop(sched.loop, None)
    if sched is None or (running is not None and running is not sched.loop):
        if sched is not None:
            by_loop = _local.__dict__.setdefault("by_loop", {})
            by_loop[sched.loop] = sched
            found = by_loop.pop(running, None)
            if found is not None:
                _local.sched = found
                return found
        return _new_scheduler(running)
    return sched


def reset_scheduler() -> None:
    """Close this thread's scheduler and forget it; the next use creates a fresh one.

    For tests and for programs that want a clean slate; dhagas still alive are abandoned.
    """
    sched = getattr(_local, "sched", None)
    others = _local.__dict__.pop("by_loop", {})
    _local.__dict__.pop("cleanups", None)
    _local.sched = None
    for s in [sched, *others.values()]:
        if s is not None:
            s.close()
