"""Helpers for testing code that uses dhagas: settle the scheduler, check for leaks.

This module knows the scheduler's internals read-only; it never changes how dhagas run.
"""

from __future__ import annotations

import gc

from .scheduler import _Worker, get_scheduler, sleep

__all__ = ["settle", "live_workers"]


def settle(max_rounds: int = 10_000) -> None:
    """Return once every other dhaga of this thread is blocked (none is runnable).

    Lets a test order events without sleeping for a guessed time: start dhagas, ``settle()``,
    then assert on what they did. Dhagas waiting on timers or I/O count as blocked.

    Args:
        max_rounds: how many rounds of ``sleep(0)`` to allow before giving up.

    Raises:
        RuntimeError: dhagas were still runnable after ``max_rounds`` scheduling rounds.
    """
    sched = get_scheduler()
    for _ in range(max_rounds):
        sleep(0)
        if not sched.runnable():
            return
    raise RuntimeError(f"dhagas still runnable after {max_rounds} rounds (a busy loop?)")


def live_workers() -> list[_Worker]:
    """Worker greenlets that are still running a dhaga (for leak checks)."""
    gc.collect()
    return [g for g in gc.get_objects() if isinstance(g, _Worker) and g.task is not None]
