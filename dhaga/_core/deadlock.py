"""Deciding that nothing can ever wake a thread's waiting top level: `Deadlock`.

How this works
--------------
`diagnose` is asked only while the thread's top-level code is parked and its loop has nothing
to do. On asyncio's loop the kernel asks when the loop is about to sleep with no timeout, which
asyncio does only when no callback is ready and no timer exists at all (not even a cancelled
one): it asks its selector, which the kernel wraps (``Scheduler._select``). On uvloop,
`dhaga._core.uvwatch` asks from a loop timer, having seen through libuv that nothing is ready
or timed. `diagnose` then looks for anything else that could still wake a waiter, and answers
"no deadlock" as soon as it finds one:

- a runnable dhaga, or a live timer in the scheduler's heap;
- a watched file descriptor other than the loop's own wake-up pipe, unless every callback on it
  belongs to an object whose ``_dhaga_can_wake()`` says no one waits (an idle socket watcher);
  on uvloop also any active libuv handle (a stream, a process...) or request in flight;
- a signal handler: one installed on the loop, or any Python-level handler other than the
  default ones (``dhaga.monitor.dump_on_signal``'s is marked harmless);
- an asyncio task not yet done on this loop;
- any other live thread, unless a registered check (`add_quiet_thread_check`) vouches that it
  can wake no one: the monitor's watchdog, `to_thread`'s pool threads while no work is pending.
  Another thread could put into a thread-safe queue, set an event, call ``submit``... On Linux
  every OS thread of the process counts (``/proc/self/task``), also those Python does not list
  (started by ``_thread.start_new_thread``, by a C library, or not yet registered), except
  libuv's pool threads (named ``libuv-worker``), whose only work is a libuv loop's requests.

Only when all of these fail is the answer a `Deadlock`, naming every parked dhaga of the thread
and what it waits on. This is deliberately conservative: a false "no deadlock" costs a hang (as
before this existed), a false `Deadlock` would break a correct program.

This module reads the scheduler and the loop; it must not know about any primitive or socket.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any, Callable

from ..errors import Deadlock

__all__ = ["add_quiet_thread_check", "diagnose", "quiet"]

_quiet_checks: list[Callable[[threading.Thread], bool]] = []


def add_quiet_thread_check(check: Callable[[threading.Thread], bool]) -> None:
    """Register ``check(thread) -> bool``: True when that thread cannot wake any waiter now."""
    _quiet_checks.append(check)


def quiet(obj: Any) -> Any:
    """Mark a thread or a signal handler as one that never wakes a waiter; returns ``obj``."""
    try:
        obj._dhaga_quiet = True
    except AttributeError:  # a builtin function: nothing to mark
        pass
    return obj


def _quiet_thread(t: threading.Thread) -> bool:
    if getattr(t, "_dhaga_quiet", False) or not t.is_alive():
        return True
    return any(check(t) for check in _quiet_checks)


def _fd_can_wake(loop: Any, key: Any) -> bool:
    if key.fd == getattr(getattr(loop, "_ssock", None), "fileno", lambda: -1)():
        return False  # the loop's own wake-up pipe: what a thread's call_soon_threadsafe uses
    data = key.data
    handles = data if isinstance(data, tuple) else (data,)
    for h in handles:
        if h is None or getattr(h, "cancelled", lambda: False)():
            continue
        owner = getattr(getattr(h, "_callback", None), "__self__", None)
        can_wake = getattr(owner, "_dhaga_can_wake", None)
        if can_wake is None or can_wake():
            return True
    return False


def _wake_source(sched: Any, loop_source: Callable[[], str | None] | None = None) -> str | None:
    """The first thing found that may still wake a waiter of ``sched``'s thread, or None.

    ``loop_source`` answers for the loop's own callbacks, timers and watched descriptors where
    asyncio's selector cannot (uvloop: `dhaga._core.uvwatch`).
    """
    loop = sched.loop
    if sched._runq or sched._drain_pending:
        return "a runnable dhaga"
    if len(sched.timers):
        return "a timer"
    if loop_source is not None:
        found = loop_source()
        if found is not None:
            return found
    else:
        if getattr(loop, "_ready", None) or getattr(loop, "_scheduled", None):
            return "a loop callback or timer"
        selector = sched._selector
        if selector is None:
            return "a loop whose waits cannot be seen"
        for key in list(selector.get_map().values()):
            if _fd_can_wake(loop, key):
                return f"fd {key.fd} is watched"
    if getattr(loop, "_signal_handlers", None):
        return "a signal handler on the loop"
    for sig in signal.valid_signals():
        try:
            h = signal.getsignal(sig)
        except (ValueError, OSError):
            continue
        if callable(h) and h is not signal.default_int_handler and not getattr(
            h, "_dhaga_quiet", False
        ):
            return f"a handler for signal {sig}"
    if any(not t.done() for t in asyncio.all_tasks(loop)):
        return "an asyncio task"
    thread = _live_thread()
    if thread is not None:
        return thread
    # A thread that ended while this looked may have posted a wake-up just before: look again.
    if sched._runq or sched._drain_pending:
        return "a runnable dhaga"
    if loop_source is not None:
        return loop_source()
    if getattr(loop, "_ready", None):
        return "a loop callback"
    return None


def _live_thread() -> str | None:
    """Another OS thread that may wake a waiter, or None.

    Python's list of threads is not enough: a thread started with ``_thread.start_new_thread``
    (or one just started, before it registers) is missing from it. On Linux every OS thread of
    the process is in ``/proc/self/task``: each must be a thread known to be quiet.
    """
    me = threading.get_native_id()
    quiet_ids = set()
    for t in threading.enumerate():
        nid = t.native_id
        if nid == me:
            continue
        if not _quiet_thread(t):
            return f"thread {t.name!r} is alive"
        if nid is not None:
            quiet_ids.add(nid)
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # not Linux: Python's list is all there is to go on
        return None
    for tid in tasks:
        if int(tid) != me and int(tid) not in quiet_ids and not _libuv_worker(tid):
            return f"OS thread {tid} is running"
    return None


def _libuv_worker(tid: str) -> bool:
    """A thread of libuv's pool (uvloop's DNS and file work): it only finishes requests of a
    libuv loop, which then count as requests in flight on that loop (`dhaga._core.uvwatch`)."""
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip() == "libuv-worker"
    except OSError:
        return False


def diagnose(sched: Any, loop_source: Callable[[], str | None] | None = None) -> Deadlock | None:
    """`Deadlock` if nothing can ever wake ``sched``'s parked top level; else None.

    Args:
        sched: the scheduler whose top level is parked, asked from its own thread.
        loop_source: for a loop without a Python selector, what on it may still wake (see
            `_wake_source`).
    """
    if _wake_source(sched, loop_source) is not None:
        return None
    from .census import census  # only now: a census walks every object

    waits = census(sched)
    lines = [
        f"nothing can ever wake the top level of thread {sched.thread_id} "
        f"({threading.current_thread().name}): no dhaga is runnable, no timer is pending, "
        "no file descriptor is watched, no thread work or other thread is running, "
        "no loop callback, signal handler or asyncio task is left. Waiting:"
    ]
    for w in waits:
        lines.append(f"  {w.name} waits on {w.waits_on}, at {w.where}")
    return Deadlock("\n".join(lines), [(w.name, w.waits_on, w.where) for w in waits])
