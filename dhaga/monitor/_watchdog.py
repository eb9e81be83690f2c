"""The blocking detector: a watchdog thread that notices a scheduler stuck outside its loop.

How this works
--------------
The kernel does no work for it. Every ``probe_interval`` the watchdog thread posts a tiny
probe callback to each running scheduler's loop (``call_soon_threadsafe``, which any thread may
call) and notes when. A loop that iterates runs the probe within microseconds; the probe
records how late it ran (the loop lag, kept for ``dhaga.stats()``). A probe still not run after
``block_threshold`` seconds means the thread has not come back to its loop: something holds it.
The watchdog then reads, from its own thread, the dhaga the scheduler is running and that
thread's current stack (``sys._current_frames()``), which is the file and line that blocks
right now, and reports it once; the episode ends when the probe finally runs.

With no monitor running nothing happens at all; with one, each loop runs one extra callback per
``probe_interval`` (the threshold, at most 250 ms): an episode is reported between one and
two thresholds after it began. Waking the watchdog more often would cost more than the probes:
each wake-up takes the GIL from the thread it watches.

It reads schedulers and never changes them; it must not know about any primitive.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .._core.census import _MACHINERY, _stack
from .._core.deadlock import quiet
from .._core.threads import all_schedulers

__all__ = ["BlockReport", "Monitor", "start", "stats_of"]

log = logging.getLogger("dhaga.monitor")

_LAGS_KEPT = 1024
_EPISODES_KEPT = 50
_TIMELINE_KEPT = 6000  # a few minutes of probes, for the dashboard's chart


@dataclass
class BlockReport:
    """One blocking episode: which dhaga held which thread, for how long, and where.

    Attributes:
        thread: the OS thread's ident; ``thread_name`` its name.
        dhaga: the name of the dhaga running when it was caught (None: a loop callback or
            the thread's top-level code).
        seconds: how long the loop had not run when reported (it may go on longer).
        stack: the thread's stack at that moment, innermost call last.
        when: ``time.time()`` of the report.
        duration: how long the episode lasted in all, once it is over (None until then).
    """

    thread: int
    thread_name: str
    dhaga: str | None
    seconds: float
    stack: list[traceback.FrameSummary] = field(default_factory=list)
    when: float = 0.0
    duration: float | None = None

    @property
    def where(self) -> str:
        """The innermost frame outside dhaga and asyncio: the call that blocks."""
        for fs in reversed(self.stack):
            if not fs.filename.startswith(_MACHINERY):
                return f"{fs.filename}:{fs.lineno} in {fs.name}"
        if self.stack:  # caught inside dhaga itself (spawning, switching)
            fs = self.stack[-1]
            return f"{fs.filename}:{fs.lineno} in {fs.name}"
        return "(unknown)"

    def __str__(self) -> str:
        who = self.dhaga if self.dhaga is not None else "a loop callback or top-level code"
        head = (f"{who} has blocked thread {self.thread} ({self.thread_name}) for "
                f"{self.seconds:.3f}s: no other dhaga on it can run. It is at {self.where}:\n")
        return head + "".join(traceback.format_list(self.stack))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the dashboard's)."""
        return {
            "thread": self.thread, "thread_name": self.thread_name, "dhaga": self.dhaga,
            "seconds": self.seconds, "where": self.where, "when": self.when,
            "duration": self.duration,
            "stack": [{"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line}
                      for f in self.stack],
        }  # fmt: skip


class _Track:
    """What the watchdog knows of one scheduler: its probe in flight and its loop lags."""

    __slots__ = ("sent_at", "since", "last_sent", "reported", "lags", "timeline", "blocked",
                 "episodes", "__weakref__")  # fmt: skip

    def __init__(self) -> None:
        self.sent_at: float | None = None  # the probe in flight (None: none)
        self.since = 0.0  # since when the loop has been running with the probe not run
        self.last_sent = 0.0
        self.reported = False
        self.lags: deque[float] = deque(maxlen=_LAGS_KEPT)
        self.timeline: deque[tuple[float, float]] = deque(maxlen=_TIMELINE_KEPT)  # (time, lag)
        self.blocked = 0
        self.episodes: deque[BlockReport] = deque(maxlen=_EPISODES_KEPT)

    def arrived(self, sent: float) -> None:
        """The probe, run on the scheduler's loop: the loop is iterating again."""
        lag = time.monotonic() - sent
        self.lags.append(lag)
        self.timeline.append((time.time(), lag))
        if self.sent_at == sent:
            self.sent_at = None
            if self.reported:
                self.reported = False
                if self.episodes:
                    self.episodes[-1].duration = lag


_tracks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # scheduler -> _Track
_monitors: list[Monitor] = []
_lock = threading.Lock()


def stats_of(sched: Any) -> _Track | None:
    """The watchdog's record of ``sched`` (None if no monitor ever watched it)."""
    return _tracks.get(sched)


def lag_timeline(seconds: float = 120.0, exclude: Any = None) -> list[list[float]]:
    """Per second of the last ``seconds``: ``[time, p50, p99]`` of the worst scheduler's lag."""
    since = time.time() - seconds
    buckets: dict[int, list[float]] = {}
    for sched, tr in list(_tracks.items()):
        if sched is exclude:
            continue
        for t, lag in list(tr.timeline):
            if t >= since:
                buckets.setdefault(int(t), []).append(lag)
    out = []
    for sec in sorted(buckets):
        lags = sorted(buckets[sec])
        out.append([float(sec), lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))]])
    return out


def recent_episodes() -> list[BlockReport]:
    """The last blocking episodes of every scheduler, oldest first."""
    out = [r for tr in list(_tracks.values()) for r in tr.episodes]
    return sorted(out, key=lambda r: r.when)


class Monitor:
    """A running blocking detector (see `start`); `stop` it when done.

    Args:
        block_threshold: seconds a scheduler may stay away from its loop before it is reported.
        on_block: called with each `BlockReport` (from the watchdog thread); may be None.
    """

    def __init__(self, block_threshold: float = 0.1,
                 on_block: Callable[[BlockReport], Any] | None = None) -> None:
        if not block_threshold > 0:
            raise ValueError(f"block_threshold must be positive, not {block_threshold!r}")
        self.block_threshold = float(block_threshold)
        self.on_block = on_block
        self.probe_interval = min(self.block_threshold, 0.25)
        self._stopping = threading.Event()
        self._thread = quiet(threading.Thread(target=self._watch, name="dhaga-monitor",
                                              daemon=True))
        self._thread.start()
        with _lock:
            _monitors.append(self)

    def __repr__(self) -> str:
        state = "stopped" if self._stopping.is_set() else "running"
        return f"<dhaga.monitor.Monitor {state} block_threshold={self.block_threshold}>"

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop watching and wait for the watchdog thread to end (idempotent)."""
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with _lock:
            if self in _monitors:
                _monitors.remove(self)

    # ------------------------------------------------------------------ the watchdog thread
    def _watch(self) -> None:
        step = self.probe_interval
        while not self._stopping.wait(step):
            try:
                self._check(time.monotonic())
            except Exception:  # noqa: BLE001 - the watchdog must outlive any one bad check
                log.exception("dhaga monitor: check failed")

    def _check(self, now: float) -> None:
        for sched in all_schedulers():
            loop = sched.loop
            if sched._closed or loop.is_closed():
                continue
            tr = _tracks.get(sched)
            if tr is None:
                tr = _tracks.setdefault(sched, _Track())
            if not loop.is_running():
                tr.since = now  # out of its loop by choice (top-level code between waits)
                continue
            sent = tr.sent_at
            if sent is None:
                if now - tr.last_sent >= self.probe_interval:
                    tr.sent_at = tr.last_sent = tr.since = now
                    try:
                        loop.call_soon_threadsafe(tr.arrived, now)
                    except RuntimeError:  # closed meanwhile
                        tr.sent_at = None
            elif not tr.reported and now - max(sent, tr.since) > self.block_threshold:
                tr.reported = True
                self._report(sched, tr, now - max(sent, tr.since))

    def _report(self, sched: Any, tr: _Track, seconds: float) -> None:
        d = sched._current
        frame = sys._current_frames().get(sched.thread_id)
        stack = _stack(frame)
        names = {t.ident: t.name for t in threading.enumerate()}
        report = BlockReport(sched.thread_id, names.get(sched.thread_id, "?"),
                             d.name if d is not None else None, seconds, stack, time.time())
        tr.blocked += 1
        tr.episodes.append(report)
        log.warning("%s", report)
        if self.on_block is not None:
            try:
                self.on_block(report)
            except Exception:  # noqa: BLE001 - a broken callback must not stop the watchdog
                log.exception("dhaga monitor: on_block callback %r raised", self.on_block)
        from ._instruments import notify_blocked
        notify_blocked(report)


def start(*, block_threshold: float = 0.1,
          on_block: Callable[[BlockReport], Any] | None = None) -> Monitor:
    """Start a watchdog thread that reports any dhaga holding its OS thread too long.

    When a scheduler (of any thread) has not come back to its loop for ``block_threshold``
    seconds, the dhaga it is running and its stack at that moment (the file and line that
    blocked) are reported once per episode: to logger ``dhaga.monitor`` at WARNING, and to
    ``on_block(report)``. ``DHAGA_MONITOR=1`` in the environment starts one when dhaga is
    imported (threshold from ``DHAGA_MONITOR_THRESHOLD``, in seconds).

    Args:
        block_threshold: seconds; 0.1 by default.
        on_block: called with each `BlockReport`, from the watchdog thread.

    Returns:
        the running `Monitor`; call ``stop()`` to end it.
    """
    return Monitor(block_threshold, on_block)
