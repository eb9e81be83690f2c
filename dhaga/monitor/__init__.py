"""Seeing inside a running dhaga program: dumps, the blocking detector, instruments, metrics.

``dhaga.dump()`` lists every live dhaga; `start` runs a watchdog thread that reports a dhaga
holding its OS thread too long; `dump_on_signal` dumps on a signal. This package reads the
core through `dhaga._core.census` and the scheduler registry; it must not park, switch or
change any scheduler's state.
"""

from __future__ import annotations

import logging
import os
import signal as _signal
import sys
from typing import IO, Any

from .._core.deadlock import quiet as _quiet
from .._core.threads import get_scheduler
from ._dashboard import Dashboard, serve
from ._dump import dump, dump_data
from ._instruments import add_instrument, remove_instrument
from ._stats import scheduler_stats
from ._watchdog import BlockReport, Monitor, recent_episodes, start

__all__ = [
    "BlockReport", "Dashboard", "Monitor", "add_instrument", "dump", "dump_data", "dump_on_signal",
    "recent_episodes", "remove_instrument", "serve", "start", "stats",
]  # fmt: skip


def dump_on_signal(signum: int = _signal.SIGUSR1, file: IO[str] = sys.stderr) -> None:
    """Write `dump` to ``file`` whenever the process receives ``signum``.

    Call it from the main thread (Python installs signal handlers only there). The handler
    runs between bytecodes of the main thread; it reads, and never wakes or changes, dhagas.

    Args:
        signum: the signal; ``SIGUSR1`` by default (``kill -USR1 <pid>``).
        file: where to write the report; ``sys.stderr`` by default.
    """

    def _handler(signum: int, frame: Any) -> None:
        dump(file)

    _signal.signal(signum, _quiet(_handler))


def stats() -> dict[str, Any]:
    """Counters of this thread's scheduler.

    Returns:
        ``alive`` (spawned, not finished), ``spawned`` (ever), ``switches`` (into dhagas;
        the kernel adds up each batch's count once per batch, so it costs nothing per
        switch), ``runnable``, ``parked``,
        ``loop_lag_p50`` and ``loop_lag_p99`` (seconds; None until a batch of dhagas has run):
        how long each of the last 1024 batches of dhagas held the loop, which is the longest
        anything else ready on it waited (the kernel times every batch, with or without a
        monitor; a batch still running counts with its length so far); while a monitor probes
        this loop, each is the larger of that and the same percentile of its last 1024
        probes. ``blocked`` (blocking episodes the monitor reported).
    """
    return scheduler_stats(get_scheduler())


def _start_from_environment() -> Monitor | None:
    """``DHAGA_MONITOR=1``: start a monitor at import (``DHAGA_MONITOR_THRESHOLD`` seconds)."""
    if os.environ.get("DHAGA_MONITOR", "") in ("", "0"):
        return None
    raw = os.environ.get("DHAGA_MONITOR_THRESHOLD", "")
    try:
        threshold = float(raw) if raw else 0.1
        if not threshold > 0:
            raise ValueError
    except ValueError:
        logging.getLogger("dhaga.monitor").warning(
            "DHAGA_MONITOR_THRESHOLD=%r is not a positive number of seconds; using 0.1", raw)
        threshold = 0.1
    return start(block_threshold=threshold)


#: The monitor ``DHAGA_MONITOR=1`` started, if any.
environment_monitor = _start_from_environment()
