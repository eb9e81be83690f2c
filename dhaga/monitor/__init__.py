"""Seeing inside a running dhaga program: dumps, the blocking detector, instruments, metrics.

``dhaga.dump()`` lists every live dhaga; `start` runs a watchdog thread that reports a dhaga
holding its OS thread too long; `dump_on_signal` dumps on a signal. This package reads the
core through `dhaga._core.census` and the scheduler registry; it must not park, switch or
change any scheduler's state.
"""

from __future__ import annotations

import signal as _signal
import sys
from typing import IO, Any

from .._core.deadlock import quiet as _quiet
from ._dump import dump, dump_data

__all__ = ["dump", "dump_data", "dump_on_signal"]


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
