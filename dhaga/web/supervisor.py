"""The pre-fork master: N worker processes serving one listening socket, restarted when they die.

How this works
--------------
The master binds the listening socket, then forks the workers; each inherits the socket and
serves it (the kernel hands each new connection to one of the processes blocked on it). Or the
master binds one ``SO_REUSEPORT`` socket per worker *slot*: the kernel spreads connections over
the sockets, and a worker that dies leaves its socket, and the connections queued on it, to its
replacement. The master itself runs no event loop and no dhaga: it blocks SIGCHLD, SIGTERM, SIGINT and SIGHUP and
takes them one at a time with ``sigtimedwait``, so no signal is lost between two checks.

- A worker that exits while the master is not stopping is replaced. Workers that die within a
  second of starting are restarted with a growing delay (up to 5 s), and after many such deaths
  in a row (a broken application that cannot even import) the master stops with status 1.
- SIGTERM or SIGINT: the master sends SIGTERM to every worker (each stops gracefully: no new
  connections, requests in flight finish within ``graceful_timeout``), waits for them, kills
  any still running after the grace period (or at once on a second signal), and exits with
  status 0.
- SIGHUP: the workers are replaced one by one (a rolling restart that reloads the application).

Each worker unblocks the signals, closes the other slots' sockets, and runs
``worker_main(listener)`` with its own;
``worker_main`` must handle SIGTERM/SIGINT itself and return (or exit) when done.

This module must not know about HTTP, WSGI or dhagas: it manages processes and a socket.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import Callable, Sequence

__all__ = ["Supervisor"]

log = logging.getLogger("dhaga.web")

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_FAST_DEATH = 1.0  # seconds: a worker dying sooner than this "failed to start"
_MAX_BACKOFF = 5.0


class Supervisor:
    """Fork and supervise one worker per listening socket in ``listeners``.

    Args:
        listeners: the bound, listening sockets, one per worker slot (the same socket repeated
            for workers sharing one).
        worker_main: run in each forked worker with its slot's socket; its return ends the
            worker (status 0), an exception ends it with status 1.
        graceful_timeout: seconds a worker gets to finish its requests after SIGTERM before
            it is killed.
        max_fast_deaths: consecutive deaths right after start before giving up.
    """

    def __init__(self, listeners: Sequence[socket.socket],
                 worker_main: Callable[[socket.socket], None],
                 graceful_timeout: float = 30.0, max_fast_deaths: int | None = None) -> None:
        self.listeners = list(listeners)
        self.worker_main = worker_main
        self.processes = len(self.listeners)
        self.graceful_timeout = graceful_timeout
        self.max_fast_deaths = max_fast_deaths or max(10, 3 * self.processes)
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (slot, start time)
        self._pending: list[tuple[float, int]] = []  # (when, slot) of workers to start
        self._fast_deaths = 0
        self._stopping = False
        self._retiring: set[int] = set()

    # ------------------------------------------------------------------ workers
    def _spawn(self, slot: int) -> None:
        mine = self.listeners[slot]
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                for other in self.listeners:
                    if other is not mine and other.fileno() >= 0:
                        other.close()
                self.worker_main(mine)
                status = 0
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(status)
        self.workers[pid] = (slot, time.monotonic())
        log.info("started worker %d", pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.workers.pop(pid, None)
            if entry is None:
                continue
            slot, started = entry
            code = os.waitstatus_to_exitcode(status)
            if self._stopping or pid in self._retiring:
                self._retiring.discard(pid)
                continue
            log.warning("worker %d exited with status %d; starting another", pid, code)
            now = time.monotonic()
            if now - started < _FAST_DEATH:
                self._fast_deaths += 1
                delay = min(_MAX_BACKOFF, 0.05 * 2 ** min(self._fast_deaths, 10))
            else:
                self._fast_deaths = 0
                delay = 0.0
            self._pending.append((now + delay, slot))

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------------ the master loop
    def run(self) -> int:
        """Start the workers and supervise them until SIGTERM/SIGINT; returns an exit status."""
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for slot in range(self.processes):
                self._spawn(slot)
            while True:
                now = time.monotonic()
                due = sorted(self._pending)
                self._pending = []
                for when, slot in due:
                    if when <= now:
                        self._spawn(slot)
                    else:
                        self._pending.append((when, slot))
                if self._fast_deaths >= self.max_fast_deaths:
                    log.error("workers keep dying as they start; giving up")
                    self._stop()
                    return 1
                wait = min(self._pending)[0] - now if self._pending else 60.0
                info = signal.sigtimedwait(_SIGNALS, max(wait, 0.001))
                if info is None:
                    continue
                if info.si_signo == signal.SIGCHLD:
                    self._reap()
                elif info.si_signo == signal.SIGHUP:
                    self._rolling_restart()
                else:
                    self._stop()
                    return 0
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)

    def _rolling_restart(self) -> None:
        log.info("SIGHUP: replacing the workers")
        for pid, (slot, _) in list(self.workers.items()):
            self._retiring.add(pid)
            self._spawn(slot)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _stop(self) -> None:
        """Stop every worker gracefully; kill those still alive after the grace period."""
        self._stopping = True
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.graceful_timeout + 1.0
        while self.workers:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("killing %d worker(s) still running after %ss",
                            len(self.workers), self.graceful_timeout)
                self._signal_all(signal.SIGKILL)
                deadline = time.monotonic() + 5.0
                while self.workers and time.monotonic() < deadline:
                    self._reap()
                    signal.sigtimedwait({signal.SIGCHLD}, 0.05)
                break
            self._reap()
            if self.workers:
                info = signal.sigtimedwait({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT},
                                           min(left, 0.5))
                if info is not None and info.si_signo != signal.SIGCHLD:
                    deadline = 0.0  # asked twice: do not wait for the grace period
        for listener in self.listeners:
            listener.close()
