"""Worker greenlets: each runs dhagas one after another, the next new one inline.

How this works
--------------
A `Dhaga` is only a handle; the greenlet that executes it is a *worker*. Creating a greenlet
costs ~10 µs on CPython 3.11+, so a worker whose dhaga finished is not thrown away: it takes the
next item of its scheduler's current batch. A *new* dhaga it runs right there, without
switching at all; to one woken after parking it switches (to that dhaga's own worker), and
waits in the scheduler's idle list to be handed a new dhaga later. With the batch used up, it
goes idle and switches to the hub. Beyond `MAX_IDLE_WORKERS` idle ones, a finished worker
exits (back to the hub) and frees its memory.

This module must not know about the event loop, timers, parking or waking: it takes dhagas from
the scheduler's run queue and hands each outcome back to `Scheduler._finish`.
"""

from __future__ import annotations

from typing import Any, Callable

import greenlet

from ..errors import Killed
from .states import DONE, NEW, RUNNING

__all__ = ["MAX_IDLE_WORKERS", "WorkerExit", "set_switch_hook", "work"]

_getcurrent = greenlet.getcurrent

#: Raised in a worker whose greenlet is being thrown away (its scheduler is gone).
WorkerExit = greenlet.GreenletExit

#: Idle worker greenlets kept for reuse; beyond this, finished workers exit and free memory.
MAX_IDLE_WORKERS = 1024


class _Worker(greenlet.greenlet):
    """A greenlet that runs dhagas, one after another."""

    __slots__ = ("task",)


def set_switch_hook(hook: Callable[[Any, Any], None] | None) -> None:
    """On the calling OS thread, call ``hook(left, entered)`` at every switch that leaves or
    enters a dhaga (each the `Dhaga`, or None for the hub or top level); None removes it.

    For instruments only: while a hook is installed, every switch costs a Python call.
    """
    if hook is None:
        greenlet.settrace(None)
        return

    def trace(event: str, args: Any) -> None:
        if event not in ("switch", "throw"):
            return
        origin, target = args
        left = origin.task if isinstance(origin, _Worker) else None
        entered = target.task if isinstance(target, _Worker) else None
        if left is not None or entered is not None:
            hook(left, entered)

    greenlet.settrace(trace)


def work(sched: Any) -> None:
    """The body of a worker greenlet: run its dhaga, then the next new ones inline."""
    gr: _Worker = _getcurrent()  # type: ignore[assignment]
    runq = sched._runq
    while True:
        task = gr.task
        try:
            # In the dhaga's own context (the greenlet's, as greenlet switches it), called
            # with a fixed arity when it can be: no C call between the worker and the dhaga's
            # frames, so a parked dhaga's stack (copied at every switch) stays shallow.
            gr.gr_context = task._ctx
            fn = task._fn
            args = task._args
            if task._kw:
                value = fn(*args, **task._kw)
            elif not args:
                value = fn()
            elif len(args) == 1:
                value = fn(args[0])
            elif len(args) == 2:
                value = fn(args[0], args[1])
            else:
                value = fn(*args)
            fn = args = None
        except greenlet.GreenletExit:  # the worker itself is being garbage-collected
            gr.gr_context = None
            task._state = DONE
            task._exc = Killed(f"{task.name} was abandoned with its scheduler")
            raise
        except BaseException as e:  # noqa: BLE001 - stored, re-raised by result()
            fn = args = None
            gr.gr_context = None  # what follows runs outside the dhaga's context, as before
            tb = e.__traceback__
            if tb is not None:
                e.__traceback__ = tb.tb_next  # drop this frame from the traceback
            sched._finish(task, None, e)
            # The traceback holds the dhaga's frames: an idle worker must not keep them.
            del e, tb
        else:
            gr.gr_context = None
            sched._finish(task, value, None)
        task = value = None  # release them before waiting for the next
        gr.task = None
        # Pick the next item of the batch: a new dhaga runs right here.
        while sched._batch > 0 and runq:
            sched._batch -= 1
            nxt = runq.popleft()
            state = nxt._state
            if state is DONE:
                continue
            sched._current = nxt
            if state is NEW:
                gr.task = nxt
                nxt._gr = gr
                nxt._state = RUNNING
                nxt = None  # held by gr.task; a stale local would outlive the dhaga
                break
            if len(sched._idle) >= MAX_IDLE_WORKERS:
                runq.appendleft(nxt)
                sched._batch += 1
                gr.parent = sched._hub  # type: ignore[assignment]
                return
            sched._idle.append(gr)
            other, nxt = nxt._gr, None
            other.switch()  # resumed later with a new gr.task
            other = None
            break
        else:
            nxt = None  # the last one skipped (killed before it started)
            if len(sched._idle) >= MAX_IDLE_WORKERS:
                gr.parent = sched._hub  # type: ignore[assignment]
                return
            sched._idle.append(gr)
            sched._current = None
            sched._hub.switch()  # type: ignore[union-attr]
