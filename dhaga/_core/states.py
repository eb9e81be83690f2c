"""A dhaga's states, the waiter that parks, and what reports a failure nobody collected.

The lowest module of the core: the kernel, the workers and the handle share these. It must not
know how a scheduler runs, parks or wakes anything.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

__all__ = ["NEW", "RUNNING", "PARKED", "DONE", "TIMED_OUT"]

log = logging.getLogger("dhaga")

# Dhaga states, as small ints compared with `is` in hot paths (an Enum lookup costs more).
NEW, RUNNING, PARKED, DONE = 0, 1, 2, 3
STATE_NAMES = {NEW: "new", RUNNING: "running", PARKED: "parked", DONE: "done"}


class _TimedOut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


#: What the kernel's ``park_timed`` returns when its timeout expired; never seen outside `_core`.
TIMED_OUT = _TimedOut()


class _Waiter:
    """What `park` suspends and `wake` resumes: a dhaga or a thread's top level."""

    # ``_on`` (what the waiter parked on, for dumps and `Deadlock`) and ``_since`` (when, by the
    # scheduler's batch clock) are set by each park and read only by `dhaga._core.census`.
    __slots__ = (
        "_sched", "_state", "_resume_value", "_resume_exc", "_pending_exc", "_gen", "_on",
        "_since",
    )  # fmt: skip

    def _take_resume(self) -> Any:
        self._gen += 1  # wake-ups addressed to the park that just ended are now stale
        exc = self._resume_exc
        if exc is not None:
            self._resume_exc = None
            raise exc
        value = self._resume_value
        self._resume_value = None
        return value


class _TopLevel(_Waiter):
    """The waiter for code that runs in no dhaga: a script, a test, a worker thread."""

    __slots__ = ()
    name = "<top level>"

    def __init__(self, sched: Any) -> None:
        self._sched = sched
        self._state = RUNNING
        self._resume_value = self._resume_exc = self._pending_exc = self._on = None
        self._gen = 0
        self._since = 0.0

    def __repr__(self) -> str:
        return f"<top level of thread {self._sched.thread_id}>"


def label_of(fn: Any) -> str:
    """What a function is called in a dhaga's default name: its qualified name."""
    inner = getattr(fn, "func", None)  # functools.partial
    if inner is not None:
        fn = inner
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name or type(fn).__name__


class _FailureReporter:
    """Logs a failed dhaga's traceback if nothing ever retrieves the failure."""

    __slots__ = ("_name", "_exc")

    def __init__(self, name: str, exc: BaseException) -> None:
        self._name = name
        self._exc: BaseException | None = exc

    def cancel(self) -> None:
        self._exc = None

    def __del__(self) -> None:
        exc = self._exc
        if exc is not None:
            self._exc = None
            log.error("%s failed and was never joined", self._name,
                      exc_info=(type(exc), exc, exc.__traceback__))


def _call_callback(fn: Callable[[Any], Any], d: Any) -> None:
    try:
        fn(d)
    except Exception:
        log.exception("done callback %r of %s raised", fn, d.name)
