"""Counters of one scheduler, from the kernel's own fields and the watchdog's probes.

Loop lag has two sources. The kernel times every batch of dhagas it runs: how long the batch
held the loop, which is the longest anything else ready on that loop (a callback, an I/O event,
a timer) waited because of it. It keeps the last ``LAGS_KEPT`` of these; that costs one clock
read per batch, never one per switch, and needs no monitor. A batch still running counts with
how long it has run so far. A running monitor also probes each loop
(`dhaga.monitor._watchdog`), which sees what batches cannot (a loop callback or coroutine
holding the loop) but only at the instants it probes. Each percentile reported is the larger
of the two sources' figures.

It reads; it must not change a scheduler or know how one runs.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from ._watchdog import stats_of

__all__ = ["percentiles", "scheduler_stats"]


def percentiles(samples: Iterable[float], *ps: float) -> list[float | None]:
    """The ``ps`` percentiles (0..1, nearest rank) of ``samples``; None for each if empty."""
    ordered = sorted(samples)
    if not ordered:
        return [None for _ in ps]
    last = len(ordered) - 1
    return [ordered[min(last, int(len(ordered) * p))] for p in ps]


def _larger(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def loop_lag(sched: Any) -> tuple[float | None, float | None]:
    """``(p50, p99)`` seconds of ``sched``'s loop lag (see the module docstring)."""
    samples = list(sched._lags)
    started = sched._batch_at
    if sched._budget and started:  # a batch is running: the loop has been held this long so far
        samples.append(time.monotonic() - started)
    batches = percentiles(samples, 0.50, 0.99)
    tr = stats_of(sched)
    if tr is None:
        return batches[0], batches[1]
    probes = percentiles(tr.lags, 0.50, 0.99)
    return _larger(batches[0], probes[0]), _larger(batches[1], probes[1])


def scheduler_stats(sched: Any) -> dict[str, Any]:
    """``dhaga.stats()`` for any scheduler (see there)."""
    tr = stats_of(sched)
    runnable = sched.runnable()
    running = 1 if sched._current is not None else 0
    p50, p99 = loop_lag(sched)
    return {
        "alive": sched.alive,
        "spawned": sched.spawned,
        "switches": sched.switch_count(),
        "runnable": runnable,
        "parked": max(0, sched.alive - runnable - running),
        "loop_lag_p50": p50,
        "loop_lag_p99": p99,
        "blocked": tr.blocked if tr is not None else 0,
    }
