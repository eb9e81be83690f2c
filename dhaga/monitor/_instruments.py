"""Instruments: trio-style hooks called as dhagas are spawned, run, park, exit, and block.

How this works
--------------
With no instrument installed the kernel runs its ordinary code: nothing is checked per switch.
Installing the first one swaps in instrumented code: `Scheduler.spawn` and `Scheduler._finish`
are wrapped (class attributes, so every caller gets the wrapped ones), and a switch hook
(`dhaga._core.workers.set_switch_hook`, one per OS thread) sees every switch into or out of a
dhaga's worker: ``before_run`` / ``after_run``, and ``parked(d, on)`` when the dhaga left because it
parked. A dhaga that a worker starts inline (no switch) is announced by its wrapped function.
Removing the last instrument swaps the plain code back.

A hook that raises is logged (logger ``dhaga.monitor``) and its instrument removed: a broken
instrument never breaks scheduling. Hooks run on the dhaga's own thread (``blocked`` on the
watchdog's) and must not block.

This module wraps kernel entry points and reads dhagas; it must not park or switch.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from .._core import threads as _threads
from .._core.kernel import Scheduler
from .._core.states import NEW, PARKED
from .._core.workers import set_switch_hook

__all__ = ["add_instrument", "remove_instrument", "notify_blocked", "switch_count"]

log = logging.getLogger("dhaga.monitor")

HOOKS = ("spawned", "before_run", "after_run", "parked", "exited", "blocked")
_instruments: list[Any] = []
_lock = threading.RLock()
_plain: dict[str, Any] = {}
_switches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # scheduler -> switches
_last = threading.local()


def switch_count(sched: Any) -> int | None:
    """Switches into dhagas of ``sched`` counted while instruments were installed."""
    return _switches.get(sched)


def _call(hook: str, *args: Any) -> None:
    for inst in list(_instruments):
        fn = getattr(inst, hook, None)
        if fn is None:
            continue
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - reported, and the instrument goes
            log.exception("dhaga instrument %r raised in %s(); it is removed", inst, hook)
            remove_instrument(inst)


def notify_blocked(report: Any) -> None:
    """Tell the instruments about a blocking episode (from the watchdog thread)."""
    if _instruments:
        _call("blocked", report)


def _before(d: Any) -> None:
    if getattr(_last, "d", None) is d:
        return
    _last.d = d
    sched = d._sched
    _switches[sched] = _switches.get(sched, 0) + 1
    _call("before_run", d)


def _after(d: Any) -> None:
    if getattr(_last, "d", None) is d:
        _last.d = None
    _call("after_run", d)
    if d._state is PARKED:
        _call("parked", d, getattr(d, "_on", None))


def _on_switch(left: Any, entered: Any) -> None:
    if left is not None:
        _after(left)
    if entered is not None:
        _before(entered)


class _Announced:
    """A spawned function that announces ``before_run`` when a worker starts it inline."""

    __slots__ = ("fn", "d", "__qualname__")

    def __init__(self, fn: Any, d: Any) -> None:
        self.fn = fn
        self.d = d
        self.__qualname__ = getattr(fn, "__qualname__", type(fn).__name__)

    def __call__(self, *args: Any, **kw: Any) -> Any:
        _before(self.d)
        self.d = None
        return self.fn(*args, **kw)


def _spawn(self: Scheduler, fn: Any, *args: Any, **kw: Any) -> Any:
    d = _plain["spawn"](self, fn, *args, **kw)
    d.name  # noqa: B018 - fix the default name from the real function before wrapping it
    d._fn = _Announced(fn, d)
    _call("spawned", d)
    return d


def _finish(self: Scheduler, task: Any, value: Any, exc: BaseException | None) -> None:
    started = task._state is not NEW
    _plain["_finish"](self, task, value, exc)
    if started:
        _call("after_run", task)
        if getattr(_last, "d", None) is task:
            _last.d = None
    _call("exited", task)


def _settrace_here() -> None:
    set_switch_hook(_on_switch if _instruments else None)


def _each_thread() -> None:
    for sched in _threads.all_schedulers():
        if sched._closed or sched.loop.is_closed():
            continue
        if sched.thread_id == threading.get_ident():
            _settrace_here()
        else:
            try:
                sched.call_threadsafe(_settrace_here)
            except RuntimeError:  # its loop closed meanwhile
                pass


def add_instrument(obj: Any) -> None:
    """Install an instrument: an object with any of the hooks below (each optional).

    ``spawned(d)``, ``before_run(d)``, ``after_run(d)``, ``parked(d, on)`` (``on``: what it
    waits on), ``exited(d)``, ``blocked(report)`` (a `BlockReport`, from a running monitor).
    Hooks run on the dhaga's thread and must not block; one that raises is logged and its
    instrument removed. Costs nothing until the first instrument is installed.

    Args:
        obj: the instrument.

    Raises:
        TypeError: ``obj`` has none of the hooks.
    """
    if not any(callable(getattr(obj, h, None)) for h in HOOKS):
        raise TypeError(f"{obj!r} has none of the instrument hooks {', '.join(HOOKS)}")
    with _lock:
        if obj in _instruments:
            return
        _instruments.append(obj)
        if len(_instruments) == 1:
            _plain["spawn"] = Scheduler.spawn
            _plain["_finish"] = Scheduler._finish
            Scheduler.spawn = _spawn  # type: ignore[method-assign]
            Scheduler._finish = _finish  # type: ignore[method-assign]
            _threads.on_new_scheduler.append(_settrace_here)
            _each_thread()


def remove_instrument(obj: Any) -> None:
    """Remove an instrument (no error if it is not installed); the last one out costs nothing."""
    with _lock:
        if obj not in _instruments:
            return
        _instruments.remove(obj)
        if not _instruments and _plain:
            Scheduler.spawn = _plain.pop("spawn")  # type: ignore[method-assign]
            Scheduler._finish = _plain.pop("_finish")  # type: ignore[method-assign]
            if _settrace_here in _threads.on_new_scheduler:
                _threads.on_new_scheduler.remove(_settrace_here)
            _each_thread()
