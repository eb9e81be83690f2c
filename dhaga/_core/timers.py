"""A scheduler's timers: one heap of deadlines behind a single event-loop timer.

How this works
--------------
Every timed wait (``sleep(t)``, ``park(timeout=t)``, ``dhaga.timeout(t)``) needs a timer, and
most are cancelled before they fire: the wait ended first. asyncio's own timers cost more than
the waits they guard when there are thousands: each is a `TimerHandle` ordered in the loop's
heap by a Python ``__lt__``, and cancelling one calls back into the loop.

So a scheduler keeps its own heap of ``(when, seq, timer)`` entries, which compare in C (``seq``
breaks ties, so timers themselves are never compared), and asks the loop for one timer only:
at the earliest deadline. Cancelling is a flag (the entry is dropped when it reaches the top,
or all at once when cancelled entries outnumber the live ones); firing pops every due entry and
calls it, then re-arms the loop timer for the next deadline.

Timed parks need less than a `Timer`: the scheduler adds an *expiry* entry, ``(when, seq,
waiter, tag)``, with `expire_later`, and the queue calls the scheduler's ``expire(waiter, tag)``
at the deadline (which ends the park if it still waits, and says whether it did). There is
nothing to cancel: a park that ends first counts its entry as stale (`stale`), and a stale entry
is dropped where a cancelled one would be. No timer object, no bound callback, no cancel call
per timed wait.

Deadlines are on ``time.monotonic()``, not the loop's clock: uvloop's ``loop.time()`` is libuv's
cached, millisecond (and on Linux "coarse") clock, which can run a few milliseconds behind, so a
loop timer may fire before the deadline by the clock users measure with. The loop timer is asked
for by delay, and on firing anything not yet due by ``time.monotonic()`` waits for a re-arm: a
timer never runs early (``sleep(0.02)`` returns no sooner than 0.02 s later).

This module must not know what a timer's callback does: it knows nothing of dhagas.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Any, Callable

__all__ = ["Timer", "TimerQueue"]

_heappush = heapq.heappush
_heappop = heapq.heappop

#: Rebuild the heap when more than this many entries are cancelled and they outnumber the rest.
_COMPACT_MIN = 256


class _Firing:
    """Stands for the loop timer while due timers run: arming waits until they are done."""

    __slots__ = ()

    def cancel(self) -> None:
        pass


_FIRING = _Firing()


class Timer:
    """A scheduled call; `cancel` it to drop it. What `TimerQueue.call_later` returns."""

    __slots__ = ("_queue", "_fn", "_args", "when")

    def __init__(
        self, queue: TimerQueue, when: float, fn: Callable[..., Any], args: tuple
    ) -> None:
        self._queue = queue
        self.when = when
        self._fn: Callable[..., Any] | None = fn
        self._args: tuple | None = args

    def __repr__(self) -> str:
        state = "pending" if self._fn is not None else "done"
        return f"<Timer {state} when={self.when:.6f}>"

    def cancel(self) -> None:
        """Drop the call if it has not run yet (idempotent)."""
        if self._fn is not None:
            self._fn = self._args = None  # release what the callback holds at once
            self._queue._cancelled += 1

    def cancelled(self) -> bool:
        """True once cancelled or fired."""
        return self._fn is None


class TimerQueue:
    """The timers of one event loop's thread; use only from that thread."""

    def __init__(self, loop: Any, expire: Callable[[Any, Any], bool] | None = None,
                 live: Callable[[Any, Any], bool] | None = None) -> None:
        self._loop = loop
        self._time = time.monotonic
        self._heap: list[tuple] = []  # (when, seq, timer) and (when, seq, waiter, tag) entries
        self._seq = itertools.count()
        self._cancelled = 0  # cancelled or stale entries still in the heap
        # expire(waiter, tag) at an expiry entry's deadline: True if it ended a wait, else falsy.
        self._expire = expire
        # live(waiter, tag): True while the entry's wait goes on; False once it ended and counted
        # the entry stale; None when it ended and has not counted it yet (it is about to).
        self._live = live
        self._armed: Any = None  # the loop timer for the earliest deadline
        self._armed_at = 0.0

    def __len__(self) -> int:
        n = len(self._heap) - self._cancelled
        return n if n > 0 else 0  # (an entry dropped before its wait counted it: see _compact)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Call ``fn(*args)`` from the loop in ``delay`` seconds (at least one loop iteration)."""
        when = self._time() + delay
        timer = Timer(self, when, fn, args)
        heap = self._heap
        _heappush(heap, (when, next(self._seq), timer))
        if self._armed is None or when < self._armed_at:
            if self._armed is not _FIRING:
                self._arm(when, delay)
        elif self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(heap):
            self._compact()
        return timer

    def expire_later(self, delay: float, waiter: Any, tag: Any) -> None:
        """Call ``expire(waiter, tag)`` from the loop in ``delay`` seconds (> 0).

        Nothing to cancel: when the wait this guards ends first, its owner calls `stale`.
        """
        when = self._time() + delay
        heap = self._heap
        _heappush(heap, (when, next(self._seq), waiter, tag))
        if self._armed is None or when < self._armed_at:
            if self._armed is not _FIRING:
                self._arm(when, delay)
        elif self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(heap):
            self._compact()

    def stale(self) -> None:
        """An expiry entry's wait ended before its deadline: the entry waits to be dropped."""
        self._cancelled += 1

    def close(self) -> None:
        """Drop every timer and the loop timer."""
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        for entry in self._heap:
            if len(entry) == 3:
                entry[2]._fn = entry[2]._args = None
        self._heap.clear()
        self._cancelled = 0

    def _arm(self, when: float, delay: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed_at = when
        self._armed = self._loop.call_later(delay if delay > 0.0 else 0.0, self._fire)

    def _compact(self) -> None:
        heap = self._heap  # in place: `_fire` may be iterating over it
        live = self._live
        kept = []
        owed = 0
        for entry in heap:
            if len(entry) == 3:
                if entry[2]._fn is not None:
                    kept.append(entry)
                continue
            state = live(entry[2], entry[3])  # type: ignore[misc]
            if state:
                kept.append(entry)
            elif state is None:
                owed += 1  # its wait ended but has not called `stale` yet: it will
        heap[:] = kept
        heapq.heapify(heap)
        self._cancelled = -owed

    def _fire(self) -> None:
        """The loop timer: run every due timer, then wait for the next deadline."""
        self._armed = _FIRING  # timers added by the callbacks wait for the re-arm below
        heap = self._heap
        now = self._time()
        try:
            while heap:
                entry = heap[0]
                if len(entry) == 4:  # an expiry
                    if entry[0] > now:
                        if self._live(entry[2], entry[3]):  # type: ignore[misc]
                            break
                        _heappop(heap)  # stale, at the top: drop it rather than wait for it
                        self._cancelled -= 1
                        continue
                    _heappop(heap)
                    if not self._expire(entry[2], entry[3]):  # type: ignore[misc]
                        self._cancelled -= 1  # it was stale (its wait had ended)
                    continue
                when, _, timer = entry
                fn = timer._fn
                if fn is None:  # cancelled
                    _heappop(heap)
                    self._cancelled -= 1
                    continue
                if when > now:
                    break
                _heappop(heap)
                args = timer._args
                timer._fn = timer._args = None
                try:
                    fn(*args)  # type: ignore[misc]
                except Exception as exc:  # noqa: BLE001 - reported as the loop reports its own
                    self._loop.call_exception_handler(
                        {
                            "message": f"exception in timer callback {fn!r}",
                            "exception": exc,
                        }
                    )
        finally:
            self._armed = None
            if heap:
                when = heap[0][0]
                self._arm(when, when - self._time())
