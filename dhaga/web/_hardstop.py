"""A last-resort exit for a server whose dhagas are wedged: SIGTERM/SIGINT always end it.

The graceful stop runs on the event loop. If the loop itself is wedged (a dhaga blocked the OS
thread: a real lock held across green I/O, a C call that never yields), that stop never runs;
so the Python-level signal handler installed here, which the interpreter runs on the main
thread even while it waits on a lock, also arms a real watchdog thread that ends the process
(status 1) when the graceful stop has not finished ``grace`` seconds later. A second signal
ends it at once.

This module must not know HTTP or dhagas: it handles signals, a thread and ``os._exit``.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
from typing import Any, Callable

__all__ = ["HardStop"]

_MARGIN = 2.0  # seconds beyond the graceful timeout before the watchdog ends the process


class HardStop:
    """Route SIGTERM/SIGINT to ``on_signal`` (called on the loop) with a bounded fallback.

    Args:
        call_on_loop: schedules a callable on the server's event loop, from any thread
            (``loop.call_soon_threadsafe``).
        on_signal: the graceful stop, called on the loop with the signal number.
        grace: seconds the graceful stop may take before the process is ended anyway.
    """

    def __init__(self, call_on_loop: Callable[..., Any], on_signal: Callable[[int], Any],
                 grace: float, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self._call_on_loop = call_on_loop
        self._on_signal = on_signal
        self._grace = grace + _MARGIN
        self._signals = signals
        self._done = _thread.allocate_lock()  # real: never patched
        self._done.acquire()
        self._armed = False
        self._previous: dict[int, Any] = {}

    def install(self) -> HardStop:
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """The server stopped normally: disarm the watchdog and restore the handlers."""
        if self._done.locked():
            self._done.release()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, sig: int, _frame: Any) -> None:
        if self._armed:  # asked twice: stop now
            os._exit(1)
        self._armed = True
        _thread.start_new_thread(self._watchdog, (sig,))
        self._call_on_loop(self._on_signal, sig)

    def _watchdog(self, sig: int) -> None:
        if self._done.acquire(timeout=self._grace):
            self._done.release()
            return
        try:
            sys.stderr.write(f"dhaga.web: [{os.getpid()}] still running {self._grace:.0f}s after "
                             f"signal {sig}: dhagas are wedged; exiting\n")
            sys.stderr.flush()
        finally:
            os._exit(1)
