"""A census of the live dhagas: each one's scheduler, state, what it waits on, and its stack.

How this works
--------------
Nothing keeps a list of live dhagas (that would cost every spawn and every finish): a census
walks the garbage collector's objects for `Dhaga` handles not yet done, which is slow but runs
only when someone asks (``dhaga.dump()``, a `Deadlock`, the dashboard). What each waits on and
since when are the ``_on`` and ``_since`` a park records; its stack is its worker greenlet's
suspended frame, or, for the dhaga running right now on some thread, that thread's frame
(``sys._current_frames``). Stacks of other threads' dhagas are read while those threads run:
a frame may move on while it is being read, so the census copies only file, line and function.

This module reads the kernel's state and never changes it; it must not know about any primitive.
"""

from __future__ import annotations

import asyncio
import gc
import os
import selectors
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from .handle import Dhaga
from .states import DONE, NEW, PARKED, RUNNING, label_of
from .threads import all_schedulers

__all__ = ["DhagaInfo", "census", "describe_wait", "label_of"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Frames in these are the machinery, not the code that waits: `DhagaInfo.where` skips them.
_MACHINERY = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (asyncio, ) if m.__file__
) + (_PACKAGE_DIR + os.sep, os.path.abspath(selectors.__file__))


@dataclass
class DhagaInfo:
    """One live dhaga (or a thread's top level that is waiting), as a census saw it."""

    name: str
    id: int
    thread: int
    thread_name: str
    state: str  # "running", "runnable", "parked", "new"
    waits_on: str | None  # readable repr of what it is parked on
    waiting: float | None  # seconds parked so far
    stack: list[traceback.FrameSummary] = field(default_factory=list)

    @property
    def where(self) -> str:
        """The innermost frame outside dhaga itself: the user code that waits or runs."""
        for fs in reversed(self.stack):
            if not os.path.abspath(fs.filename).startswith(_MACHINERY):
                return f"{fs.filename}:{fs.lineno} in {fs.name}"
        if self.stack:
            fs = self.stack[-1]
            return f"{fs.filename}:{fs.lineno} in {fs.name}"
        return "(not started)"


def describe_wait(on: Any) -> str:
    """A readable repr of what a waiter parked on (a broken ``__repr__`` does not break dumps)."""
    if on is None:
        return "(unknown)"
    try:
        text = repr(on)
    except Exception as e:  # noqa: BLE001 - a dump must not fail on one bad repr
        text = f"<{type(on).__name__} (repr failed: {e!r})>"
    return text if len(text) <= 200 else text[:197] + "..."


_CORE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _stack(frame: Any) -> list[traceback.FrameSummary]:
    """The frames from ``frame`` out, without the core's own at either end (worker, switch)."""
    if frame is None:
        return []
    try:
        frames = list(traceback.extract_stack(frame, limit=40))
    except Exception:  # noqa: BLE001 - a frame that moved on under us
        return []
    while len(frames) > 1 and frames[-1].filename.startswith(_CORE_DIR):
        frames.pop()
    start = 0
    while start < len(frames) - 1 and frames[start].filename.startswith(_CORE_DIR):
        start += 1
    return frames[start:]


def _thread_names() -> dict[int, str]:
    return {t.ident: t.name for t in threading.enumerate() if t.ident is not None}


def census(sched: Any = None) -> list[DhagaInfo]:
    """Every live dhaga (of ``sched`` only, when given), with top-level waits, oldest first.

    Args:
        sched: a scheduler to restrict the census to; None for every thread's.

    Returns:
        one `DhagaInfo` per live dhaga, and one per thread whose top-level code is parked.
    """
    now = time.monotonic()
    frames = sys._current_frames()
    names = _thread_names()
    me = threading.get_ident()
    out: list[DhagaInfo] = []
    dhagas = [o for o in gc.get_objects() if type(o) is Dhaga and o._state is not DONE]
    dhagas.sort(key=lambda d: d._id)
    for d in dhagas:
        s = d._sched
        if sched is not None and s is not sched:
            continue
        if s._closed or s.loop.is_closed():
            continue
        state = d._state
        on = waited = None
        if state is PARKED:
            label = "parked"
            on = describe_wait(getattr(d, "_on", None))
            since = getattr(d, "_since", 0.0)
            waited = max(0.0, now - since) if since else None
            stack = _stack(d._gr.gr_frame if d._gr is not None else None)
        elif state is NEW:
            label, stack = "new", []
        elif state is RUNNING and s._current is d:
            label = "running"
            frame = sys._getframe(1) if s.thread_id == me else frames.get(s.thread_id)
            stack = _stack(frame)
        else:
            label = "runnable"
            stack = _stack(d._gr.gr_frame if d._gr is not None else None)
        out.append(DhagaInfo(d.name, d._id, s.thread_id, names.get(s.thread_id, "?"), label,
                             on, waited, stack))
    for s in all_schedulers():
        if (sched is not None and s is not sched) or s._closed or s.loop.is_closed():
            continue
        top = s._top
        if top._state is PARKED:
            if s._current is None:
                frame = sys._getframe(1) if s.thread_id == me else frames.get(s.thread_id)
            else:  # a dhaga runs on that thread: the top level is suspended in the hub
                hub = s._hub
                frame = hub.gr_frame if hub is not None else None
            out.append(DhagaInfo("<top level>", 0, s.thread_id, names.get(s.thread_id, "?"),
                                 "parked", describe_wait(top._on),
                                 max(0.0, now - top._since) if top._since else None,
                                 _stack(frame)))
    return out
