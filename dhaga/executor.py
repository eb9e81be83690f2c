"""`GreenExecutor`, a drop-in `ThreadPoolExecutor` that runs each call in a dhaga, and its futures.

How this works
--------------
`GreenExecutor` runs each call in its own dhaga, spawned on the submitting thread's scheduler
(in the submitter's context). Each thread that submits has a *lane*: at most ``max_workers``
calls of the lane run at once; the others wait in the lane's FIFO, and a call that finishes
hands its worker slot to the next one (a new dhaga, which the scheduler starts in the finished
one's greenlet). Its futures are `concurrent.futures.Future` subclasses whose
``result()``/``exception()`` park the caller instead of blocking the OS thread, and whose
waiter list swaps the `threading.Event` of `concurrent.futures.wait`/`as_completed` for a
`dhaga.sync.Event`, so those stdlib functions work unchanged inside a dhaga and at the top
level of the thread that runs the calls.

`dhaga.pool` re-exports `GreenExecutor`, `GreenFuture` and `BrokenThreadPool`; import them from
there.

This module knows the scheduler's spawn/park API, `dhaga.sync` and `concurrent.futures`;
it knows nothing about I/O, nor about `Pool`.
"""

from __future__ import annotations

import _thread
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from concurrent import futures as _cf
from concurrent.futures.thread import BrokenThreadPool
from contextvars import copy_context
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ._core.parking import park, ticket, wake
from ._core.workers import WorkerExit
from .errors import Timeout
from .scheduler import Scheduler, _local, get_scheduler
from .sync import Event

__all__ = ["GreenExecutor", "GreenFuture", "BrokenThreadPool"]

T = TypeVar("T")
_LOGGER = logging.getLogger("concurrent.futures")  # where ThreadPoolExecutor logs, too
_DONE_STATES = (_cf._base.CANCELLED, _cf._base.CANCELLED_AND_NOTIFIED, _cf._base.FINISHED)

if issubclass(Timeout, _cf.TimeoutError):  # Python 3.11+: futures.TimeoutError is TimeoutError
    _FutureTimeout: type[Timeout] = Timeout
else:  # pragma: no cover - Python 3.10
    class _FutureTimeout(Timeout, _cf.TimeoutError):  # type: ignore[no-redef, misc]
        """A `dhaga.Timeout` that is also 3.10's ``concurrent.futures.TimeoutError``."""


# ---------------------------------------------------------------------- futures
class _GreenWaiters(list):
    """A future's waiter list: gives `concurrent.futures.wait`/`as_completed` a green event.

    Those functions install one waiter object (with a `threading.Event`) on every future, then
    block on the event. When the waiter is installed on one of our futures, its event becomes
    a `dhaga.sync.Event`: same methods, but waiting parks the dhaga (or drives the loop) and
    setting it from any thread wakes the waiter.
    """

    __slots__ = ()

    def append(self, waiter: Any) -> None:
        event = getattr(waiter, "event", None)
        if event is not None and not isinstance(event, Event):
            green = Event()
            if event.is_set():
                green.set()
            waiter.event = green
        super().append(waiter)


class _FutureLock(_thread.RLock):  # type: ignore[misc]
    """All a `GreenFuture` needs of a condition: a lock (its waits are green, not ``wait()``).

    A `threading.Condition` per future costs ~1.5 KB and microseconds to build; this, 64 bytes.
    """

    __slots__ = ()

    def notify_all(self) -> None:
        pass

    notify = notify_all


_FUTURE_FIELDS = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_LEAN_FUTURE = set(vars(_cf.Future())) == _FUTURE_FIELDS  # else: a Python we do not know


class GreenFuture(_cf.Future):
    """A `concurrent.futures.Future` whose waits park the caller's dhaga, not its OS thread."""

    def __init__(self) -> None:
        if _LEAN_FUTURE:
            self._state = _cf._base.PENDING
            self._result = self._exception = None
            self._done_callbacks: list[Callable[[Any], Any]] = []
        else:  # pragma: no cover - a Python whose Future has other fields
            super().__init__()
        self._condition = _FutureLock()  # type: ignore[assignment]
        self._waiters = _GreenWaiters()

    def _wait_done(self, timeout: float | None) -> None:
        mine = ticket()

        def _woken(_: Any) -> None:
            wake(mine, True)

        with self._condition:
            if self._state in _DONE_STATES:
                return
            self._done_callbacks.append(_woken)
        timed_out = True
        try:
            timed_out = park(mine, timeout, False) is False
        finally:
            if timed_out:
                with self._condition:
                    # Once done, the callbacks are being run: leave the list alone.
                    if self._state not in _DONE_STATES:
                        self._done_callbacks.remove(_woken)
        if timed_out and self._state not in _DONE_STATES:
            raise _FutureTimeout(f"future not done within {timeout}s", timeout)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the call and return its value, or re-raise its exception.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            the value the call returned.

        Raises:
            dhaga.Timeout: (a ``concurrent.futures.TimeoutError``) ``timeout`` expired first.
            concurrent.futures.CancelledError: the future was cancelled.
        """
        if self._state not in _DONE_STATES:
            self._wait_done(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the call and return its exception, or None; see `result`.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            the exception the call raised, or None if it returned.

        Raises:
            dhaga.Timeout: ``timeout`` expired first.
            concurrent.futures.CancelledError: the future was cancelled.
        """
        if self._state not in _DONE_STATES:
            self._wait_done(timeout)
        return super().exception(0)


def _result_or_cancel(fut: GreenFuture, timeout: float | None = None) -> Any:
    try:
        try:
            return fut.result(timeout)
        finally:
            fut.cancel()
    finally:
        del fut  # do not keep the result alive through this frame


# ---------------------------------------------------------------------- GreenExecutor
_executors: weakref.WeakSet[GreenExecutor] = weakref.WeakSet()
_counter = itertools.count()


class _Lane:
    """One submitting thread's share of an executor: its queued calls and its running ones."""

    __slots__ = ("sched", "queue", "workers", "free_slots", "idle", "dead")

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.queue: deque[tuple] = deque()  # (future, fn, args, kwargs, context)
        self.workers = 0  # calls running (a "worker" is a slot, passed from call to call)
        self.free_slots: list[int] = []
        self.idle = Event()
        self.idle.set()
        self.dead = False  # its loop closed; its calls were written off or adopted


class GreenExecutor(_cf.Executor):
    """A `concurrent.futures.Executor` that runs each call in a dhaga: a drop-in replacement
    for `ThreadPoolExecutor`.

    Each call runs in its own dhaga on the scheduler of the thread that submitted it, in a copy
    of the submitter's contextvars context; at most ``max_workers`` calls of one submitting
    thread run at once, the others wait in FIFO order. Submitting is thread-safe, and so are
    the futures. As with every dhaga, the calls progress while their thread blocks in dhaga
    calls or runs its loop: ``future.result()``, ``concurrent.futures.wait``, ``as_completed``,
    ``shutdown(wait=True)`` and leaving the ``with`` block all do. Calls left queued by a
    thread whose loop has closed run in the thread that calls ``shutdown(wait=True)``.

    Args:
        max_workers: at most this many calls run at once; ThreadPoolExecutor's default.
        thread_name_prefix: the calls' dhagas are named ``<prefix>_<worker number>``.
        initializer: called with ``initargs`` when a worker slot starts; if it fails, the
            executor is broken (`BrokenThreadPool`), as ThreadPoolExecutor is.
        initargs: the arguments for ``initializer``.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., Any] | None = None,
        initargs: tuple = (),
    ) -> None:
        if max_workers is None:
            cpus = getattr(os, "process_cpu_count", os.cpu_count)()
            max_workers = min(32, (cpus or 1) + 4)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix or f"GreenExecutor-{next(_counter)}"
        self._names: list[str] = []
        self._initializer = initializer
        self._initargs = initargs
        self._mutex = threading.Lock()
        self._lanes: dict[Scheduler, _Lane] = {}
        self._nworkers = 0  # calls running, all lanes
        self._idle = Event()  # set while no call runs
        self._idle.set()
        self._shutdown = False
        self._broken: str | bool = False
        _executors.add(self)

    def __repr__(self) -> str:
        queued = sum(len(lane.queue) for lane in self._lanes.values())
        return f"<GreenExecutor max_workers={self._max_workers} running={self._nworkers} " \
               f"queued={queued}>"

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> GreenFuture:
        """Schedule ``fn(*args, **kwargs)``; return a future for its outcome.

        Args:
            fn: the function to run.
            *args: positional arguments for ``fn``.
            **kwargs: keyword arguments for ``fn``.

        Returns:
            a `GreenFuture` (a `concurrent.futures.Future`) for the call's outcome.

        Raises:
            RuntimeError: the executor was shut down.
            BrokenThreadPool: a worker's initializer failed.
        """
        f = GreenFuture()
        sched = get_scheduler()
        with self._mutex:
            if self._broken:
                raise BrokenThreadPool(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            lane = self._lanes.get(sched)
            if lane is None:
                lane = self._lanes[sched] = _Lane(sched)
            if lane.workers >= self._max_workers:
                lane.queue.append((f, fn, args, kwargs, copy_context()))
                return f
            slot = self._count_in(lane)
        # The new dhaga starts in a copy of this (the submitter's) context.
        self._spawn(lane, slot, f, fn, args, kwargs, self._initializer is not None)
        return f

    def _count_in(self, lane: _Lane) -> int:  # under the mutex; returns a worker number
        slot = lane.free_slots.pop() if lane.free_slots else lane.workers
        if lane.workers == 0:
            lane.idle.clear()
        lane.workers += 1
        self._nworkers += 1
        self._idle.clear()
        return slot

    def _count_out(self, lane: _Lane, slot: int) -> None:  # under the mutex
        if lane.dead:
            return  # already counted out when its thread's calls were adopted
        lane.workers -= 1
        lane.free_slots.append(slot)
        self._nworkers -= 1
        if not lane.workers:
            lane.idle.set()
            if not lane.queue and self._lanes.get(lane.sched) is lane:
                del self._lanes[lane.sched]
        if not self._nworkers:
            self._idle.set()

    def _spawn(self, lane: _Lane, slot: int, *call: Any) -> None:
        d = lane.sched.spawn(self._run, lane, slot, *call)
        names = self._names
        while len(names) <= slot:
            names.append(f"{self._prefix}_{len(names)}")
        d._name = names[slot]

    def _run(self, lane: _Lane, slot: int, f: GreenFuture, fn: Callable[..., Any],
             args: tuple, kwargs: dict, initialize: bool) -> None:
        """One call in its own dhaga; then hand the worker slot to the next queued call."""
        if initialize:
            try:
                self._initializer(*self._initargs)  # type: ignore[misc]
            except BaseException:  # noqa: BLE001 - reported as ThreadPoolExecutor does
                _LOGGER.critical("Exception in initializer:", exc_info=True)
                self._initializer_failed(lane, slot, f)
                return
        abandoned = False
        if f.set_running_or_notify_cancel():
            try:
                result = fn(*args, **kwargs)
            except WorkerExit as exc:  # its scheduler is gone: nothing more runs here
                abandoned = True
                f.set_exception(exc)
            except BaseException as exc:  # noqa: BLE001 - the future carries it (Killed too)
                f.set_exception(exc)
            else:
                f.set_result(result)
            result = None  # keep nothing alive (an `except ... as exc` name is already unbound)
        f = fn = args = kwargs = None  # type: ignore[assignment]  # keep nothing alive
        with self._mutex:
            if abandoned or not lane.queue:  # checked and counted out under one lock
                self._count_out(lane, slot)
                return
            nf, fn, args, kwargs, ctx = lane.queue.popleft()
        ctx.run(self._spawn, lane, slot, nf, fn, args, kwargs, False)  # in its submitter's context

    def _initializer_failed(self, lane: _Lane, slot: int, f: GreenFuture) -> None:
        with self._mutex:
            self._broken = "A thread initializer failed, the thread pool is not usable anymore"
            items = [(f,)] + [item for lane_ in self._lanes.values() for item in lane_.queue]
            for lane_ in self._lanes.values():
                lane_.queue.clear()
            self._count_out(lane, slot)
        for item in items:
            try:
                item[0].set_exception(BrokenThreadPool(self._broken))
            except _cf.InvalidStateError:
                pass  # cancelled meanwhile

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """``map(fn, *iterables)`` with the calls run concurrently; results in input order.

        Args:
            fn: called with one item of each iterable.
            *iterables: the arguments, consumed in step as ``map`` does.
            timeout: seconds from this call until the whole iterator must be consumed.
            chunksize: accepted and ignored, as by ThreadPoolExecutor.
            buffersize: if set, at most this many calls are submitted ahead of the results
                consumed (Python 3.14's option).

        Returns:
            an iterator of the results in input order; it re-raises a call's exception when
            it reaches that call.

        Raises:
            dhaga.Timeout: (a ``concurrent.futures.TimeoutError``) from ``next()`` when the
                timeout expired; the calls not started are cancelled.
        """
        if buffersize is not None and (not isinstance(buffersize, int) or buffersize < 1):
            raise ValueError("buffersize must be None or > 0")
        end = None if timeout is None else timeout + time.monotonic()
        args_iter = zip(*iterables)
        first = args_iter if buffersize is None else itertools.islice(args_iter, buffersize)
        fs = deque(self.submit(fn, *args) for args in first)

        def result_iterator() -> Iterator[T]:
            try:
                while fs:
                    if buffersize is not None:
                        args = next(args_iter, None)
                        if args is not None:
                            fs.append(self.submit(fn, *args))
                    left = None if end is None else end - time.monotonic()
                    yield _result_or_cancel(fs.popleft(), left)
            finally:
                for f in fs:
                    f.cancel()

        return result_iterator()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; optionally cancel the queued ones, and wait for the rest.

        Safe to call several times. With ``wait``, calls still queued by threads whose loop
        has closed are run here before it returns.

        Args:
            wait: wait until every submitted call has finished.
            cancel_futures: cancel the calls still queued (not yet started).
        """
        here = get_scheduler() if wait else None
        starts: list[tuple] = []
        with self._mutex:
            self._shutdown = True
            cancelled = []
            if cancel_futures:
                for lane in self._lanes.values():
                    cancelled.extend(lane.queue)
                    lane.queue.clear()
            if here is not None:
                starts = self._adopt_orphans(here)
        for item in cancelled:
            if item[0].cancel():
                item[0].set_running_or_notify_cancel()  # wakes concurrent.futures.wait() too
        for lane, slot, (f, fn, args, kwargs, ctx) in starts:
            ctx.run(self._spawn, lane, slot, f, fn, args, kwargs, self._initializer is not None)
        if wait:
            self._idle.wait()

    def _adopt_orphans(self, here: Scheduler) -> list[tuple]:
        """Under the mutex: take over the calls of lanes whose loop closed (their dhagas are
        gone), and return the queued calls to start here now."""
        lane = self._lanes.get(here)
        for other in list(self._lanes.values()):
            if other.sched is here or not other.sched._closed:
                continue
            self._nworkers -= other.workers
            other.workers = 0
            other.dead = True
            del self._lanes[other.sched]
            if other.queue:
                if lane is None:
                    lane = self._lanes[here] = _Lane(here)
                lane.queue.extend(other.queue)
        if not self._nworkers:
            self._idle.set()
        starts = []
        while lane is not None and lane.queue and lane.workers < self._max_workers:
            starts.append((lane, self._count_in(lane), lane.queue.popleft()))
        return starts


def _python_exit() -> None:
    """At interpreter exit, refuse new calls and let queued ones finish, as ThreadPoolExecutor does.

    Only the calls of this thread can be driven from here; others are left alone.
    """
    sched = getattr(_local, "sched", None)
    for ex in list(_executors):
        with ex._mutex:
            ex._shutdown = True
            lane = ex._lanes.get(sched) if sched is not None else None
        if lane is not None and not sched._closed:
            lane.idle.wait()


if hasattr(threading, "_register_atexit"):  # runs before non-daemon threads are joined
    threading._register_atexit(_python_exit)
else:  # pragma: no cover
    import atexit

    atexit.register(_python_exit)
