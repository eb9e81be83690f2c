"""The per-thread scheduler: the run queue, parking and waking.

How this works
--------------
Each OS thread has one `Scheduler` (see `dhaga._core.threads`), bound to one asyncio event
loop (which Tornado's IOLoop wraps). A `Dhaga` is a handle (result, callbacks, name); the
greenlet that executes it is a *worker* (`dhaga._core.workers`), kept separate so that a finished
worker can run the next dhaga without creating a new greenlet.

There is one way to suspend. Code that must wait takes a *waiter* (the current dhaga, or the
thread's top-level waiter when no dhaga is running), registers it wherever the wake-up will come
from, and parks (`dhaga._core.parking.park`, over `Scheduler.park_timed`). Whoever wakes it
calls `wake`: the waiter goes on the run queue (or, for the top level, the loop is stopped) and
the park returns the value or raises the exception. A timeout is a timer that wakes the waiter
with `Timeout`; a kill wakes it with `Killed`. A waiter woken with a value keeps that value: a
kill or timeout that arrives after the wake is delivered at its next blocking point, so a
value handed over (a queue item, a lock) is never lost.

The run queue is drained in batches by one loop callback: a batch is what was runnable when it
began plus up to `DRAIN_EXTRA` dhagas woken while it runs; then the loop polls for I/O and
timers again. The queue is FIFO, so `sleep(0)` lets every other runnable dhaga run once
before the caller continues. A dhaga that parks switches straight to the next runnable one in
the batch (no trip through the loop's greenlet), and a worker whose dhaga finished runs the
next *new* dhaga inline, without switching at all. The loop's greenlet (the *hub*) is
whichever greenlet runs the event loop: the top-level code of a thread blocking on something,
or `asyncio.run()`.

Primitives do not call these methods directly: they park through `dhaga._core.parking`.
This module must not know about sockets, protocols, or any primitive built on parking, nor
which scheduler belongs to which thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time
from asyncio.events import _get_running_loop, _set_running_loop
from collections import deque
from concurrent.futures import Future as _ConcurrentFuture
from functools import partial
from typing import Any, Callable

import greenlet

from ..errors import BlockingError, Killed
from . import threads
from .deadlock import diagnose
from .handle import Dhaga
from .polling import PollHooks, register_direct
from .states import (
    DONE,
    NEW,
    PARKED,
    RUNNING,
    TIMED_OUT,
    _call_callback,
    _FailureReporter,
    _TopLevel,
    _Waiter,
)
from .timers import TimerQueue
from .uvwatch import watch_idle
from .workers import _Worker, work

__all__ = ["DRAIN_EXTRA", "Scheduler", "register_direct", "wake"]

_getcurrent = greenlet.getcurrent
_get_ident = threading.get_ident
_copy_context = contextvars.copy_context
_monotonic = time.monotonic
_ids = itertools.count(1)

#: How many dhagas woken *during* a drain may still run in it before the loop polls for I/O
#: again. Dhagas that hand work back and forth then switch directly to each other, without a
#: loop iteration (and its epoll system call) per hand-off, yet I/O waits at most this long.
DRAIN_EXTRA = 512

#: How many batches' loop lag a scheduler keeps for ``dhaga.stats()`` (the last ones).
LAGS_KEPT = 1024

def _park_live(waiter: _Waiter, gen: int) -> bool | None:
    """Is the timed park an expiry entry guards still waiting (see `TimerQueue`)?

    False once that park has ended and counted its entry stale (`Scheduler.park_timed` does
    both as it returns, where the generation moves on); None if it was woken but has not run
    since, so has not counted it yet.
    """
    if waiter._gen != gen:
        return False
    return True if waiter._state is PARKED else None


_BLOCKING_MSG = (
    "a blocking dhaga call was made in a coroutine or callback running on the event loop; "
    "that would block the loop. Run the blocking code in a dhaga instead: "
    "dhaga.spawn(fn) or decorate the function with @dhaga.green and await it"
)


class Scheduler(PollHooks):
    """One OS thread's scheduler: its run queue, workers, timers and event loop.

    Get it with `get_scheduler()`; never create one directly.

    Args:
        loop: the asyncio event loop of this scheduler's thread.
        owns_loop: True when the scheduler made the loop (and closes it when reset).
    """

    # Slots: the hot paths read these on every switch and wake; a dict of more than 30 keys
    # would lose CPython's shared-key fast look-ups, and a misspelt attribute fails loudly.
    __slots__ = (
        "loop", "thread_id", "_thread_id", "_owns_loop", "_runq", "_batch", "_drain_pending",
        "_current", "_hub", "_idle", "_top", "_ioloop", "spawned", "finished", "switches",
        "_batch_cut", "_budget", "_closed", "_top_woken", "_hidden_loop", "_call_soon",
        "timers", "_call_later", "_batch_at", "_lags", "_lag", "_selector", "_in_poll",
        "_loop_process_events", "_poll_handle", "_epoll", "_fd_to_key", "_idle_watch", "__weakref__",
    )  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop, owns_loop: bool) -> None:
        self.loop = loop
        self.thread_id = self._thread_id = _get_ident()
        self._owns_loop = owns_loop
        self._runq: deque[Dhaga] = deque()
        self._batch = 0
        self._drain_pending = False
        self._current: Dhaga | None = None
        self._hub: greenlet.greenlet | None = None
        self._idle: list[_Worker] = []
        self._top = _TopLevel(self)
        self._ioloop: Any = None
        self.spawned = 0  # dhagas ever spawned here
        self.finished = 0  # and finished (``alive`` is the difference: one count per event)
        # Switches into dhagas, counted per batch (what a batch's budget used up), not per switch.
        self.switches = 0
        self._batch_cut = 0  # budget a waking top level took off the running batch
        self._budget = 0  # the running batch's budget; 0 between batches
        self._closed = False
        self._top_woken = False
        self._hidden_loop: asyncio.AbstractEventLoop | None = None  # set while a batch runs
        self._call_soon = loop.call_soon
        self.timers = TimerQueue(loop, self._expire, _park_live)
        self._call_later = self.timers.call_later
        self._batch_at = 0.0  # when the current (or last) batch began: parks are dated by it
        # How long each of the last batches held the loop (dhaga.monitor._stats reads it).
        self._lags: deque[float] = deque(maxlen=LAGS_KEPT)
        self._lag = self._lags.append
        # asyncio's selector loops let `Deadlock` be detected where the loop would sleep forever.
        sel = getattr(loop, "_selector", None)
        self._selector = sel if hasattr(sel, "get_map") and hasattr(sel, "select") else None
        self._in_poll = False  # a poll's readiness callbacks are running: wake_now defers to its drain
        self._loop_process_events: Callable[[list], None] | None = None
        self._epoll: Any = None  # the epoll object, when the scheduler polls it (_poll_epoll)
        self._fd_to_key: dict = {}
        if self._selector is not None:
            self._hook_poll(loop)

    def __repr__(self) -> str:
        return f"<Scheduler thread={self.thread_id} alive={self.alive} loop={self.loop!r}>"

    # ------------------------------------------------------------------ public
    @property
    def alive(self) -> int:
        """Dhagas spawned here and not yet finished."""
        return self.spawned - self.finished

    @property
    def ioloop(self) -> Any:
        """The Tornado IOLoop wrapping this scheduler's asyncio loop."""
        if self._ioloop is None:
            from tornado.ioloop import IOLoop
            self._ioloop = IOLoop._ioloop_for_asyncio.get(self.loop)
            if self._ioloop is None:
                from tornado.platform.asyncio import BaseAsyncIOLoop
                self._ioloop = BaseAsyncIOLoop(asyncio_loop=self.loop, make_current=False)
        return self._ioloop

    def spawn(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Dhaga:
        """Start ``fn(*args, **kw)`` in a new dhaga on this scheduler.

        Args:
            fn: the function to run.
            *args: positional arguments for ``fn``.
            **kw: keyword arguments for ``fn``.

        Returns:
            the new `Dhaga`; it runs at this scheduler's next scheduling point.
        """
        d = Dhaga.__new__(Dhaga)
        d._id = next(_ids)
        d._name = None
        d._sched = self
        d._fn = fn
        d._args = args
        d._kw = kw
        d._ctx = _copy_context()
        d._gr = None
        d._state = NEW
        d._resume_value = d._resume_exc = d._pending_exc = None
        d._gen = 0
        d._value = d._exc = None
        d._joiners = d._callbacks = None  # lists made on first use: fewer objects for the GC
        d._retrieved = False
        d._reporter = None
        self.spawned += 1
        self._runq.append(d)
        if not self._drain_pending:
            self._drain_pending = True
            self._call_soon(self._drain)
        return d

    def submit(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> _ConcurrentFuture:
        """Run ``fn`` in a new dhaga on this scheduler's thread; callable from any thread.

        Args:
            fn: the function to run.
            *args: positional arguments for ``fn``.
            **kw: keyword arguments for ``fn``.

        Returns:
            a `concurrent.futures.Future` completed with the dhaga's outcome.
        """
        cf: _ConcurrentFuture = _ConcurrentFuture()
        ctx = _copy_context()

        def _start() -> None:
            if not cf.set_running_or_notify_cancel():
                return
            d = self.spawn(ctx.run, fn, *args, **kw)
            d._retrieved = True  # the future carries the outcome
            d.add_done_callback(_settle)

        def _settle(d: Dhaga) -> None:
            if d._exc is not None:
                cf.set_exception(d._exc)
            else:
                cf.set_result(d._value)

        self.call_threadsafe(_start)
        return cf

    def runnable(self) -> int:
        """How many dhagas are runnable now (woken or new, not yet run)."""
        return len(self._runq)

    def call_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` on this scheduler's loop thread (from any thread).

        Args:
            fn: a callback; it runs on the loop and must not block.
            *args: its arguments.
        """
        self.loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ parking
    def waiter(self) -> _Waiter:
        """The waiter for the caller: its dhaga, or the thread's top level.

        Raises:
            BlockingError: the caller is a coroutine or callback running on the event loop.
        """
        d = self._current
        if d is not None:
            return d
        if _get_running_loop() is not None:
            raise BlockingError(_BLOCKING_MSG)
        return self._top

    def park_timed(self, waiter: _Waiter, timeout: float | None, on: Any = None) -> Any:
        """Like `park`, but return `TIMED_OUT` when ``timeout`` expires instead of raising.

        Primitives whose timeout is not an error (``join``, ``Event.wait``) use this, so that
        a `Timeout` raised by an enclosing ``dhaga.timeout()`` block is never mistaken for
        their own.

        Args:
            waiter: the current dhaga, or this thread's top-level waiter.
            timeout: seconds to wait at most; None waits forever.
            on: what it waits on (shown by ``dhaga.dump()`` and in `Deadlock`).

        Returns:
            the value the waiter was woken with, or `TIMED_OUT`.

        Raises:
            BaseException: whatever the waiter was interrupted with (a kill, a ``dhaga.timeout``).
        """
        exc = waiter._pending_exc
        if exc is not None:
            waiter._pending_exc = None
            raise exc
        waiter._state = PARKED
        waiter._on = on
        waiter._since = self._batch_at
        if timeout is None:
            if waiter is self._top:
                self._suspend(waiter)
            else:
                self._switch_next()  # the hot path: a dhaga hands over the thread
            waiter._gen += 1  # as _take_resume(), written out
        elif timeout <= 0:
            handle = self._call_soon(self._unpark, waiter, TIMED_OUT)
            try:
                if waiter is self._top:
                    self._suspend(waiter)
                else:
                    self._switch_next()
            finally:
                handle.cancel()
            waiter._gen += 1
        else:
            # An expiry entry in the timer heap (see _expire): nothing to cancel after. The park
            # counts its entry stale (unless the entry ended it) and moves its generation on
            # together, however it ends: _park_live tells the two apart by the generation.
            timers = self.timers
            timers.expire_later(timeout, waiter, waiter._gen)
            try:
                if waiter is self._top:
                    self._suspend(waiter)
                else:
                    # _switch_next's common case, written out (a timed read's park)
                    runq = self._runq
                    if self._batch > 0 and runq and runq[0]._state is RUNNING:
                        self._batch -= 1
                        nxt = runq.popleft()
                        self._current = nxt
                        gr = nxt._gr
                        nxt = runq = None  # a suspended frame must not keep others alive
                        gr.switch()
                    else:
                        runq = None
                        self._switch_next()
            finally:
                if waiter._resume_value is not TIMED_OUT:
                    timers._cancelled += 1  # TimerQueue.stale(): it ended first
                waiter._gen += 1
        exc = waiter._resume_exc
        if exc is not None:
            waiter._resume_exc = None
            raise exc
        value = waiter._resume_value
        waiter._resume_value = None
        return value

    def _expire(self, waiter: _Waiter, gen: int) -> bool:
        """A timed park's deadline (the timer queue calls it): end it if it still waits."""
        if waiter._state is not PARKED or waiter._gen != gen:
            return False  # it ended first (its entry was stale)
        if waiter is self._top:
            self._unpark(waiter, TIMED_OUT)
            return True
        # _unpark, written out for a dhaga: many timed waits end this way.
        waiter._state = RUNNING
        waiter._resume_value = TIMED_OUT
        waiter._resume_exc = None
        self._runq.append(waiter)
        if not self._drain_pending:
            self._drain_pending = True
            self._call_soon(self._drain)
        return True

    def _unpark(
        self,
        waiter: _Waiter,
        value: Any = None,
        exc: BaseException | None = None,
        gen: int | None = None,
    ) -> bool:
        """Wake a parked waiter of this thread. Returns False if it was not parked.

        With ``gen``, only the park that was current when ``gen`` was read is woken: a
        wake-up that crossed threads and arrives after that park ended is dropped.
        """
        if waiter._state is not PARKED or (gen is not None and gen != waiter._gen):
            return False
        waiter._state = RUNNING
        waiter._resume_value = value
        waiter._resume_exc = exc
        if waiter is self._top:
            # Top-level code is waiting: it runs after the dhagas runnable now (as if it were
            # queued behind them), not after those they wake in turn. Stopping the drain at
            # once instead would cost a loop restart per wake-up when many come together.
            cut = self._batch - len(self._runq)
            if cut > 0:
                self._batch_cut += cut
                self._batch -= cut
            self._top_woken = True  # and start no other before the loop stops (uvloop would)
            self.loop.stop()
            return True
        self._runq.append(waiter)  # type: ignore[arg-type]
        if not self._drain_pending:
            self._drain_pending = True
            self._call_soon(self._drain)
        return True

    def _suspend(self, waiter: _Waiter) -> None:
        if waiter is self._top:
            loop = self.loop
            if _get_running_loop() is not None:
                waiter._state = RUNNING
                waiter._gen += 1
                raise BlockingError(_BLOCKING_MSG)
            waiter._since = _monotonic()
            sel = self._selector
            if sel is not None:  # see _select: where the loop would sleep forever
                sel.select = self._select
            else:  # uvloop: a timer of dhaga._core.uvwatch looks
                watch_idle(self)
            try:
                while waiter._state is PARKED:
                    loop.run_forever()
            except BaseException:
                waiter._state = RUNNING
                waiter._gen += 1
                raise
            finally:
                waiter._on = None  # what it waited on must not be kept alive from here
                if sel is not None:
                    if self._epoll is not None:
                        sel.select = self._poll_epoll
                    else:
                        sel.__dict__.pop("select", None)
                # Drains were skipped while the loop was stopping: make sure the dhagas still
                # runnable get one when the loop runs next, whoever runs it.
                self._top_woken = False
                if self._runq and not self._drain_pending:
                    self._drain_pending = True
                    self._call_soon(self._drain)
            return
        # A dhaga: hand the thread to the next runnable one, or to the hub.
        self._switch_next()

    def _switch_next(self) -> None:
        runq = self._runq
        if self._batch > 0 and runq and runq[0]._state is RUNNING:
            # The common case first: the next of the batch was woken (not new, not killed).
            self._batch -= 1
            nxt = runq.popleft()
            self._current = nxt
            gr = nxt._gr
            nxt = runq = None  # a suspended frame must not keep other dhagas alive
            gr.switch()
            return
        while self._batch > 0 and runq:
            self._batch -= 1
            nxt = runq.popleft()
            state = nxt._state
            if state is DONE:  # killed before it started
                continue
            if state is NEW:
                if self._idle:
                    gr = self._idle.pop()
                elif _getcurrent() is self._hub:
                    gr = self._new_worker()
                else:
                    # A new greenlet inherits its starter's recursion depth, so only the hub
                    # (whose stack is shallow) starts new workers: let it take this one.
                    runq.appendleft(nxt)
                    self._batch += 1
                    break
                self._current = nxt
                gr.task = nxt
                nxt._gr = gr
                nxt._state = RUNNING
            else:
                self._current = nxt
                gr = nxt._gr
            # A suspended frame must not keep other dhagas alive.
            nxt = None
            gr.switch()
            return
        nxt = None  # the last one skipped (killed before it started)
        self._current = None
        self._hub.switch()  # type: ignore[union-attr]

    def interrupt(self, waiter: _Waiter, exc: BaseException) -> bool:
        """Raise ``exc`` in ``waiter`` at its blocking point: how kills and timeouts arrive.

        A parked waiter is woken with it; one already woken (a value is waiting for it) gets it
        at its next blocking point, so nothing handed to it is lost; a dhaga not yet started
        finishes with it and never runs. From another thread, the interrupt is sent to this
        scheduler's thread.

        Returns:
            False if there is nothing to wait for: the dhaga had finished, or it never started
            (and now never will); True otherwise.

        Raises:
            BaseException: ``exc`` itself, when ``waiter`` is the caller.
        """
        if self._thread_id != _get_ident():
            self.call_threadsafe(self.interrupt, waiter, exc)
            return True
        state = waiter._state
        if state is DONE:
            return False
        if state is NEW:
            self._finish(waiter, None, exc)  # type: ignore[arg-type]
            return False
        if waiter is self._current:
            raise exc
        if state is PARKED:
            self._unpark(waiter, None, exc)
        else:
            waiter._pending_exc = exc
        return True

    def _select(self, timeout: float | None = None) -> Any:
        """The loop's selector, while top-level code waits: where `Deadlock` is found.

        asyncio asks its selector to wait with no timeout only when it has no callback ready
        and no timer at all. If then nothing else can wake anything (`dhaga._core.deadlock`),
        the top-level waiter is woken with `Deadlock` instead of sleeping forever.
        """
        sel = self._selector
        if timeout is None and self._top._state is PARKED and not self._runq:
            exc = diagnose(self)
            if exc is not None:
                self._unpark(self._top, None, exc)
                return []
        if self._epoll is not None:
            return self._poll_epoll(timeout)
        return type(sel).select(sel, timeout)

    # ------------------------------------------------------------------ the hub side
    def _drain(self) -> None:
        """Run one batch of the run queue (a loop callback).

        ``_drain_pending`` stays set while the batch runs, so dhagas woken meanwhile join this
        batch instead of scheduling another loop callback (and another poll) each.
        """
        if self._top_woken:  # the loop is stopping to resume top-level code
            self._drain_pending = False
            return
        hub = _getcurrent()
        if isinstance(hub, _Worker):
            self._drain_pending = False
            raise RuntimeError("the event loop is being run from inside a dhaga")
        self._hub = hub
        self._batch_at = _monotonic()
        runq = self._runq
        budget = self._budget = self._batch = len(runq) + DRAIN_EXTRA
        self._batch_cut = 0  # a cut made between batches (a stale budget) does not count
        # Dhagas are synchronous code: inside one, asyncio reports no running loop (as under
        # gevent), so libraries that detect async contexts (Django's async_unsafe) see sync
        # code. Loop code (callbacks, coroutines) still sees its loop. Once per batch.
        self._hidden_loop = running = _get_running_loop()
        _set_running_loop(None)
        try:
            while self._batch > 0 and runq:
                # Runs the first runnable dhaga; returns when one parks or finishes with the
                # batch exhausted, or when a worker exits.
                self._switch_next()
        finally:
            _set_running_loop(running)
            self._hidden_loop = None
            self._current = None
            self.switches += budget - self._batch - self._batch_cut
            self._batch_cut = self._budget = 0
            self._lag(_monotonic() - self._batch_at)
            if runq:
                self._call_soon(self._drain)  # still pending: the next batch
            else:
                self._drain_pending = False

    def switch_count(self) -> int:
        """Switches into dhagas so far, the running batch's included."""
        if self._budget:
            return self.switches + self._budget - self._batch - self._batch_cut
        return self.switches

    def _new_worker(self) -> _Worker:
        return _Worker(partial(work, self), parent=self._hub)

    def _finish(self, task: Dhaga, value: Any, exc: BaseException | None) -> None:
        """Record the outcome, release what the dhaga held, wake joiners, run callbacks."""
        if exc is not None and task._name is None:
            task.name  # noqa: B018 - fix the default name (what ran) while it is still known
        if task._state is NEW:
            task._gr = None  # killed before starting; it stays in the run queue, skipped
        task._state = DONE
        task._value = value
        task._exc = exc
        task._fn = task._args = task._kw = task._ctx = task._gr = task._on = None
        task._pending_exc = None
        self.finished += 1
        joiners = task._joiners
        if joiners:
            task._joiners = None
            for waiter, gen in joiners:
                wake(waiter, None, None, gen)
        callbacks = task._callbacks
        if callbacks:
            task._callbacks = None
            running, self._current = self._current, None  # a callback that blocks: BlockingError
            hidden = self._hidden_loop
            if hidden is not None:  # in a batch (see _drain): callbacks are loop code
                _set_running_loop(hidden)
            try:
                for cb in callbacks:
                    _call_callback(cb, task)
            finally:
                self._current = running
                if hidden is not None:
                    _set_running_loop(None)
        if exc is not None and not task._retrieved and not isinstance(exc, Killed):
            task._reporter = _FailureReporter(task.name, exc)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Drop the dhagas not yet started, and close the loop if this scheduler owns it."""
        if self._closed:
            return
        self._closed = True
        while self._runq:
            d = self._runq.popleft()
            if d._state is NEW:
                self._finish(d, None, Killed("scheduler closed"))
        self._idle.clear()
        self.timers.close()
        if self._loop_process_events is not None and self.loop.__dict__.get(
            "_process_events"
        ) in (self._after_poll, self._after_epoll):
            del self.loop._process_events  # type: ignore[attr-defined]
        if self._epoll is not None and self._selector.__dict__.get("select") in (  # type: ignore[union-attr]
            self._poll_epoll, self._select
        ):
            del self._selector.select  # type: ignore[union-attr]
        self._epoll = None
        if self._owns_loop and self._thread_id == _get_ident():
            # Read the policy's slot directly: get_event_loop() would call current_thread(),
            # which in a thread being torn down registers a _DummyThread that never goes away.
            local = getattr(asyncio.get_event_loop_policy(), "_local", None)
            if getattr(local, "_loop", None) is self.loop:
                asyncio.set_event_loop(None)
        if self._ioloop is not None and self._owns_loop:
            self._ioloop.close()
        elif self._owns_loop and not self.loop.is_closed() and not self.loop.is_running():
            self.loop.close()


def wake(
    waiter: _Waiter, value: Any = None, exc: BaseException | None = None, gen: int | None = None
) -> None:
    """Wake a parked waiter, from any thread; a no-op if it is no longer parked.

    Args:
        gen: ``waiter._gen`` read when the waiter was registered; pass it whenever the
            wake-up may come from another thread, so a late one cannot wake a later park.
    """
    sched = waiter._sched
    if sched._thread_id == _get_ident():
        # Scheduler._unpark, inlined for the common case of a dhaga of this thread.
        if waiter._state is not PARKED or (gen is not None and gen != waiter._gen):
            return
        if waiter is sched._top:
            sched._unpark(waiter, value, exc, gen)
            return
        waiter._state = RUNNING
        waiter._resume_value = value
        waiter._resume_exc = exc
        sched._runq.append(waiter)  # type: ignore[arg-type]
        if not sched._drain_pending:
            sched._drain_pending = True
            sched._call_soon(sched._drain)
    else:
        sched.loop.call_soon_threadsafe(sched._unpark, waiter, value, exc, gen)


Scheduler.wake = staticmethod(wake)  # type: ignore[attr-defined] - for the handle's joiners
threads.set_scheduler_type(Scheduler)
