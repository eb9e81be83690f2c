"""Counters of one scheduler, from the kernel's own fields and the watchdog's probes.

It reads; it must not change a scheduler or know how one runs.
"""

from __future__ import annotations

from typing import Any

from ._watchdog import stats_of

__all__ = ["scheduler_stats"]


def scheduler_stats(sched: Any) -> dict[str, Any]:
    """``dhaga.stats()`` for any scheduler (see there)."""
    tr = stats_of(sched)
    lags = sorted(tr.lags) if tr is not None else []
    runnable = sched.runnable()
    running = 1 if sched._current is not None else 0

    def pct(p: float) -> float | None:
        return lags[min(len(lags) - 1, int(len(lags) * p))] if lags else None

    return {
        "alive": sched.alive,
        "spawned": sched.spawned,
        "switches": sched.switch_count(),
        "runnable": runnable,
        "parked": max(0, sched.alive - runnable - running),
        "loop_lag_p50": pct(0.50),
        "loop_lag_p99": pct(0.99),
        "blocked": tr.blocked if tr is not None else 0,
    }
