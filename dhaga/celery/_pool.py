"""`TaskPool`: a Celery worker pool that runs each task in a dhaga.

How this works
--------------
Celery hands the pool one call per task (``on_apply``) from its consumer loop, which must never
wait. A job is queued, and at most ``limit`` (``--concurrency``) *runner* dhagas exist: a runner
takes jobs off the queue one after another; when the queue is empty it parks as *idle*, and
``on_apply`` wakes the idle runner that parked last rather than spawning a new one. A runner
idle for `IDLE_KEEPALIVE` seconds (the app's ``dhaga_idle_keepalive`` setting) ends -- one reaper
timer per pool ends them, not a timer per park -- so an idle pool soon holds no dhaga and a busy
one never has more than the limit.

Reusing runners is what a thread pool does with its threads, and it matters to Celery: its app
keeps the result backend and the current-task stack in ``threading.local`` objects (one
namespace per dhaga once patched), so a dhaga per task would build a new backend object for
every task; a runner builds it once. As in ``-P threads``, thread-locals and context variables
a task sets stay visible to the next task the same runner runs.

A job runs Celery's own ``apply_target`` (accept callback, the traced task, the result
callback). Around the task itself (between acceptance and the result callback):

* the hard time limit is a `dhaga.timeout` block: at the limit the task is interrupted at its
  blocking point by an exception it cannot swallow, and Celery's timeout callback records
  ``TimeLimitExceeded`` (and acks or requeues per ``acks_late``/``acks_on_timeout``); the
  runner goes on with the next job;
* the soft time limit raises Celery's ``SoftTimeLimitExceeded`` (an ``Exception``) inside the
  task, at its blocking point, so the task can clean up;
* ``revoke(terminate=True)`` raises a private ``BaseException`` in the task; Celery has already
  marked the task revoked and acknowledged it.

An interruption aimed at a task that has just finished may still be pending when the task
returns; it is collected before the result callback runs, so it never lands in the callback or
in the next job.

With the Redis and AMQP transports Celery drives its consumer with kombu's event loop, which
calls ``select.poll`` -- green after `dhaga.celery`'s patching -- so while the consumer waits
for messages, the tasks run; remote control, heartbeats and the timers stay on that loop.

Celery's cold-shutdown signal handler stops the pool; a signal handler runs wherever the main
thread is, possibly on the event loop, where nothing may wait: stopping then does not wait for
the runners (the consumer terminates the pool next, which kills them).

This module knows Celery's pool interface, dhaga's public calls and its parking API (tickets,
for idle runners); it must not know what is patched or when (that is `_patching`'s business:
the pool only asks it to make sure, and refuses to start on a kombu loop that was imported
unpatched).
"""

from __future__ import annotations

import enum
import itertools
import logging
import time
from collections import deque
from typing import Any, Callable

from celery.concurrency import base
from celery.exceptions import SoftTimeLimitExceeded

from .. import scheduler as _scheduler
from .._core.parking import park as _park
from .._core.parking import ticket as _ticket
from .._core.parking import wake as _wake
from ..errors import BlockingError, Killed, Timeout
from ..timeouts import timeout as _timeout

__all__ = ["TaskPool", "IDLE_KEEPALIVE"]

#: Seconds an idle runner waits for the next task before it ends, unless the app's
#: ``dhaga_idle_keepalive`` setting says otherwise.
IDLE_KEEPALIVE = 10.0

_monotonic = time.monotonic

log = logging.getLogger("celery.pool")

_TOO_LATE = (
    "dhaga.celery.TaskPool was chosen after Celery had imported kombu's event loop, which holds "
    "the real epoll: every task would block the worker. Select the pool on the command line so "
    "that dhaga patches first: CELERY_CUSTOM_WORKER_POOL=dhaga.celery:TaskPool celery -A proj "
    "worker -P custom (or python -m dhaga.celery -A proj worker -P dhaga), not with the "
    "worker_pool setting.")


def _seconds(value: Any) -> float:
    """The ``dhaga_idle_keepalive`` setting as seconds, or a ValueError saying what is wrong."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds >= 0:
        raise ValueError(f"dhaga_idle_keepalive must be a number of seconds >= 0, not {value!r}")
    return seconds


class _State(enum.Enum):
    QUEUED = "queued"
    ACCEPTING = "accepting"  # Celery's accept callback: the task-started event, the early ack
    RUNNING = "running"  # the task itself
    FINISHED = "finished"  # nothing interrupts it any more


class _Terminated(BaseException):
    """Raised inside a task by ``revoke(terminate=True)``; never seen outside the pool."""


_LOOK = None  # an idle runner's wake-up value: look at the queue again
_END = object()  # ... and this one: end now (kept idle too long, or the pool stops)


class _IdleRunner:
    """What a dhaga.dump() shows an idle runner waiting on."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "celery pool: idle, waiting for a task"


_IDLE = _IdleRunner()


class _Job:
    """One task handed to the pool; also the handle ``apply_async`` returns to Celery."""

    __slots__ = ("pid", "target", "args", "kwargs", "callback", "accept_callback",
                 "timeout_callback", "hard", "soft", "state", "dhaga",
                 "sent", "collected", "limit", "__weakref__")

    def __init__(self, pid: int, target: Callable[..., Any], args: Any, kwargs: Any,
                 callback: Any, accept_callback: Any, timeout_callback: Any,
                 hard: float | None, soft: float | None) -> None:
        self.pid = pid
        self.target = target
        self.args = args
        self.kwargs = kwargs
        self.callback = callback
        self.accept_callback = accept_callback
        self.timeout_callback = timeout_callback
        self.hard = hard
        self.soft = soft
        self.state = _State.QUEUED
        self.dhaga: Any = None
        self.sent: list[BaseException] = []  # interruptions raised in the task, in order
        self.collected = False
        self.limit: Any = None

    def terminate(self, signal: Any = None) -> None:
        """Celery calls this after ``TaskPool.terminate_job``, which did the work."""

    def interrupt_with(self, exc: BaseException) -> bool:
        """Raise ``exc`` in the task at its blocking point; False if it is not running."""
        if self.state not in (_State.ACCEPTING, _State.RUNNING):
            return False
        self.sent.append(exc)
        self.dhaga.kill(exc, block=False)
        return True

    def was_sent(self, exc: BaseException) -> bool:
        return any(exc is sent for sent in self.sent)

    def collect_interrupt(self) -> None:
        """Take back an interruption still pending after the task ended (a blocking point).

        Call it once the state is FINISHED: no interruption can be sent after that.
        """
        if not self.sent or self.collected:
            return
        self.collected = True
        try:
            _scheduler.sleep(0)
        except BaseException as exc:  # noqa: BLE001 - only our own interruption is taken
            if not self.was_sent(exc):
                raise


class TaskPool(base.BasePool):
    """A Celery worker pool running each task in a dhaga, at most ``--concurrency`` at once.

    Select it with ``CELERY_CUSTOM_WORKER_POOL=dhaga.celery:TaskPool celery -A proj worker -P
    custom --concurrency 1000``, or ``python -m dhaga.celery -A proj worker -P dhaga -c 1000``.
    Soft and hard time limits, ``revoke(terminate=True)``, warm and cold shutdown are supported
    (see docs/celery.md).
    """

    signal_safe = False
    is_green = False  # kombu's loop (or Celery's blocking loop) drives the consumer: see above
    task_join_will_block = False
    body_can_be_buffer = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from kombu.utils import eventio

        from ._patching import patch_worker

        patch_worker()  # a no-op when done early, as it should be
        if getattr(eventio, "epoll", None) is not None:  # bound when kombu was imported
            raise RuntimeError(_TOO_LATE)
        super().__init__(*args, **kwargs)
        self.limit = max(1, int(self.limit or 1))
        self.timeout = kwargs.get("timeout")
        self.soft_timeout = kwargs.get("soft_timeout")
        self._queue: deque[_Job] = deque()
        self._jobs: dict[int, _Job] = {}
        self._runners: set[Any] = set()
        # Idle runners' tickets with the time they parked, oldest first (woken from the end).
        self._idle: deque[tuple[Any, float]] = deque()
        self._reaper: Any = None
        self._stopping = False
        app = (kwargs.get("initargs") or (None,))[0]  # Celery passes (app, hostname)
        keepalive = getattr(app, "conf", {}).get("dhaga_idle_keepalive")
        self.idle_keepalive = IDLE_KEEPALIVE if keepalive is None else _seconds(keepalive)
        self._pids = itertools.count(1)

    # ------------------------------------------------------------------ Celery's pool interface
    def on_apply(self, target: Callable[..., Any], args: Any = None, kwargs: Any = None,
                 callback: Any = None, accept_callback: Any = None, timeout: float | None = None,
                 timeout_callback: Any = None, soft_timeout: float | None = None,
                 **_: Any) -> _Job:
        job = _Job(next(self._pids), target, args or (), kwargs or {}, callback, accept_callback,
                   timeout_callback,
                   self.timeout if timeout is None else timeout,
                   self.soft_timeout if soft_timeout is None else soft_timeout)
        self._queue.append(job)
        self._start_runner()
        return job

    def _start_runner(self) -> None:
        """Get a runner to look at the queue: wake the last idle one, else spawn one if allowed.

        A runner woken for nothing (another took the job first) parks again; an idle ticket
        that no longer wakes anyone (its runner was killed) is skipped.
        """
        idle = self._idle
        while idle:
            if _wake(idle.pop()[0], _LOOK):
                return
        if len(self._runners) < self.limit:
            self._runners.add(_scheduler.spawn(self._runner))

    def terminate_job(self, pid: int, signal: Any = None) -> None:
        """``revoke(terminate=True)``: interrupt the task (the signal is ignored)."""
        job = self._jobs.get(pid)
        if job is not None:
            job.interrupt_with(_Terminated(signal))

    def on_stop(self) -> None:
        """Warm shutdown: tasks not yet started are dropped (their messages were not acked, the
        broker delivers them again); running tasks finish."""
        self._queue.clear()
        self._stopping = True
        self._end_idle()
        self._join_runners(None)

    def _join_runners(self, timeout: float | None) -> None:
        """Wait for the runners to end, unless called where nothing may wait.

        Celery's cold-shutdown signal handler stops the pool, and a signal handler runs wherever
        the main thread is: on the event loop, where waiting raises `BlockingError`. The
        handler then sets the flag that makes the consumer terminate the pool, which kills the
        runners; there is nothing to wait for here.
        """
        for runner in list(self._runners):
            try:
                runner.join(timeout)
            except BlockingError:
                return

    def on_terminate(self) -> None:
        """Cold shutdown: kill every running task; unacknowledged messages go back to the broker."""
        self._queue.clear()
        self._stopping = True
        self._end_idle()
        for runner in list(self._runners):
            runner.kill(block=False)
        self._join_runners(5.0)

    def grow(self, n: int = 1) -> None:
        """Allow ``n`` more tasks at once (Celery's ``--autoscale`` and ``pool_grow``).

        Args:
            n: how many more.
        """
        self.limit += n
        for _ in range(min(n, len(self._queue))):
            self._start_runner()

    def shrink(self, n: int = 1) -> None:
        """Allow ``n`` fewer tasks at once (never fewer than one); running tasks finish.

        Args:
            n: how many fewer.
        """
        self.limit = max(1, self.limit - n)  # runners over the limit end after their job
        excess = len(self._runners) - self.limit
        while excess > 0 and self._idle:  # idle ones first, the longest idle first
            _wake(self._idle.popleft()[0], _END)
            excess -= 1

    def restart(self) -> None:
        """Nothing to restart: there are no child processes."""

    @property
    def num_processes(self) -> int:
        return self.limit

    def _get_info(self) -> dict[str, Any]:
        info = super()._get_info()
        info.update({"running": len(self._jobs), "queued": len(self._queue),
                     "idle-runners": len(self._idle)})
        return info

    # ------------------------------------------------------------------ running jobs
    def _runner(self) -> None:
        me = _scheduler.current()
        queue = self._queue
        try:
            while len(self._runners) <= self.limit:
                if queue:
                    self._run(queue.popleft())
                    continue
                if self._stopping:
                    break
                mine = _ticket()
                self._idle.append((mine, _monotonic()))
                if self._reaper is None:
                    self._reaper = _scheduler.spawn_later(self.idle_keepalive, self._reap)
                if _park(mine, None, None, _IDLE) is _END and not queue:
                    break
        finally:
            self._runners.discard(me)

    def _reap(self) -> None:
        """End the runners idle for ``idle_keepalive`` seconds; come back while any is idle."""
        self._reaper = None
        idle = self._idle
        too_old = _monotonic() - self.idle_keepalive
        while idle and idle[0][1] <= too_old:
            _wake(idle.popleft()[0], _END)
        if idle and not self._stopping:
            self._reaper = _scheduler.spawn_later(idle[0][1] - too_old, self._reap)

    def _end_idle(self) -> None:
        """Wake every idle runner to end (warm and cold shutdown)."""
        idle = self._idle
        while idle:
            _wake(idle.popleft()[0], _END)
        if self._reaper is not None:
            self._reaper.kill(block=False)
            self._reaper = None

    def _run(self, job: _Job) -> None:
        job.dhaga = _scheduler.current()
        job.state = _State.ACCEPTING
        self._jobs[job.pid] = job
        try:
            base.apply_target(self._call_task, (job,), {}, job.callback, job.accept_callback,
                              pid=job.pid, propagate=(Timeout, _Terminated, Killed))
        except Timeout as exc:
            if job.limit is None or exc is not job.limit.exception:
                raise
            job.timeout_callback(False, job.hard)
        except _Terminated as exc:
            if not job.was_sent(exc):
                raise
        except Exception:
            # The task's own failures are results (Celery's tracer catches them): this is
            # Celery's bookkeeping around it failing (a result callback losing the broker).
            log.exception("dhaga pool: handling the outcome of job %s failed", job.pid)
        finally:
            job.state = _State.FINISHED
            self._jobs.pop(job.pid, None)
            job.collect_interrupt()

    def _call_task(self, job: _Job) -> Any:
        job.state = _State.RUNNING
        soft_timer = None
        if job.soft:
            soft_timer = _scheduler.spawn_later(job.soft, self._soft_limit, job)
        try:
            if not job.hard:
                return job.target(*job.args, **job.kwargs)
            job.limit = _timeout(job.hard)
            with job.limit:
                return job.target(*job.args, **job.kwargs)
        finally:
            job.state = _State.FINISHED  # nothing interrupts it from here on
            if soft_timer is not None and not soft_timer.done():
                soft_timer.kill(block=False)
            job.collect_interrupt()

    @staticmethod
    def _soft_limit(job: _Job) -> None:
        if job.state is not _State.RUNNING:
            return
        if job.interrupt_with(SoftTimeLimitExceeded(job.soft)) and job.timeout_callback:
            job.timeout_callback(True, job.soft)
