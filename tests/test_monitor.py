"""The blocking detector (dhaga.monitor.start), instruments, and dhaga.stats()."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import pytest

import dhaga
import dhaga.monitor
from dhaga.monitor import add_instrument, remove_instrument
from dhaga.sync import Event, Queue

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _block_thread(seconds: float) -> None:
    time.sleep(seconds)  # a call that holds the OS thread: the line the report must name


def test_a_dhaga_holding_the_thread_is_reported_once_with_the_line_that_blocks(caplog):
    caplog.set_level(logging.WARNING, logger="dhaga.monitor")
    reports = []
    got = threading.Event()

    def on_block(r):
        reports.append(r)
        got.set()

    def culprit():
        while not got.is_set() and time.monotonic() < deadline:
            _block_thread(0.01)  # many short blocks, one episode: never back to the loop

    with dhaga.monitor.start(block_threshold=0.05, on_block=on_block):
        dhaga.run(dhaga.sleep, 0.01)  # the monitor sees the loop running before the episode
        deadline = time.monotonic() + 20
        d = dhaga.spawn(culprit)
        d.join()
        dhaga.sleep(0.1)  # the loop runs again: the episode ends
    assert len(reports) == 1
    r = reports[0]
    assert r.dhaga == d.name and r.thread == threading.get_ident()
    assert r.seconds >= 0.05
    assert r.where.endswith("in _block_thread") and "test_monitor.py" in r.where
    assert "time.sleep(seconds)" in str(r)
    assert any("has blocked thread" in rec.getMessage() for rec in caplog.records)
    assert dhaga.stats()["blocked"] == 1


def test_blocking_on_another_threads_scheduler_is_reported():
    reports = []
    got = threading.Event()

    def on_block(r):
        reports.append(r)
        got.set()

    def other():
        def culprit():
            got.wait(20)  # a real threading.Event: holds that thread
        dhaga.sleep(0.05)
        dhaga.spawn(culprit).join()

    with dhaga.monitor.start(block_threshold=0.05, on_block=on_block):
        t = threading.Thread(target=other, name="worker-thread")
        t.start()
        t.join(30)
    assert reports and reports[0].thread_name == "worker-thread"
    assert reports[0].dhaga.endswith(f"culprit-{reports[0].dhaga.rsplit('-', 1)[1]}")


def test_a_loop_that_keeps_coming_back_is_never_reported():
    reports = []

    def busy_but_fair():
        for _ in range(200):
            dhaga.sleep(0.001)

    with dhaga.monitor.start(block_threshold=0.05, on_block=reports.append) as m:
        dhaga.joinall([dhaga.spawn(busy_but_fair) for _ in range(5)])
        assert "running" in repr(m)
    assert reports == []
    s = dhaga.stats()
    assert s["loop_lag_p50"] is not None and s["loop_lag_p50"] < 0.05


def test_a_broken_on_block_callback_is_logged_and_the_monitor_goes_on(caplog):
    caplog.set_level(logging.ERROR, logger="dhaga.monitor")
    done = threading.Event()

    def broken(report):
        done.set()
        raise RuntimeError("callback bug")

    def culprit():
        done.wait(20)

    with dhaga.monitor.start(block_threshold=0.05, on_block=broken) as m:
        dhaga.run(dhaga.sleep, 0.01)
        dhaga.run(culprit)
        assert m._thread.is_alive()
    assert any("callback bug" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)


def test_bad_threshold_is_refused():
    with pytest.raises(ValueError):
        dhaga.monitor.start(block_threshold=0)


def test_dhaga_monitor_environment_variable_starts_one():
    code = (
        "import time, dhaga, dhaga.monitor\n"
        "assert dhaga.monitor.environment_monitor.block_threshold == 0.05\n"
        "def main():\n"
        "    dhaga.sleep(0.05)\n"
        "    time.sleep(0.4)\n"
        "dhaga.run(main)\n"
        "dhaga.run(dhaga.sleep, 0.05)\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT, DHAGA_MONITOR="1", DHAGA_MONITOR_THRESHOLD="0.05")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "main-1 has blocked thread" in proc.stderr
    assert "It is at <string>:5 in main" in proc.stderr


# ---------------------------------------------------------------------------- instruments
class Recorder:
    def __init__(self):
        self.events = []

    def spawned(self, d):
        self.events.append(("spawned", d.name))

    def before_run(self, d):
        self.events.append(("before_run", d.name))

    def after_run(self, d):
        self.events.append(("after_run", d.name))

    def parked(self, d, on):
        self.events.append(("parked", d.name, repr(on)))

    def exited(self, d):
        self.events.append(("exited", d.name))


def test_instruments_see_spawn_run_park_and_exit():
    rec = Recorder()
    q = Queue()

    def consumer():
        return q.get()

    add_instrument(rec)
    try:
        c = dhaga.spawn(consumer)
        p = dhaga.spawn(q.put, 1)
        dhaga.joinall([c, p])
        assert dhaga.stats()["switches"] >= 3
    finally:
        remove_instrument(rec)
    name = c.name
    mine = [e for e in rec.events if e[1] == name]
    assert mine[0] == ("spawned", name)
    assert ("parked", name, "<Queue size=0 maxsize=0>") in mine
    assert mine.count(("before_run", name)) == 2  # started, then resumed with the item
    assert mine[-1] == ("exited", name)
    assert ("exited", p.name) in rec.events
    before = len(rec.events)
    dhaga.run(lambda: None)
    assert len(rec.events) == before  # removed: no more calls
    from dhaga._core.kernel import Scheduler
    assert Scheduler.spawn.__module__ == "dhaga._core.kernel"  # the plain code is back


def test_a_broken_instrument_is_logged_and_removed_and_scheduling_goes_on(caplog):
    caplog.set_level(logging.ERROR, logger="dhaga.monitor")

    class Broken:
        def before_run(self, d):
            raise RuntimeError("instrument bug")

    b = Broken()
    add_instrument(b)
    try:
        ev = Event()
        assert dhaga.run(lambda: (dhaga.spawn(ev.set), ev.wait())[1]) is True
    finally:
        remove_instrument(b)
    assert any("instrument bug" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)
    from dhaga.monitor import _instruments
    assert b not in _instruments._instruments


def test_an_object_with_no_hooks_is_refused():
    with pytest.raises(TypeError):
        add_instrument(object())


def test_stats_counts_this_threads_scheduler():
    ev = Event()
    ds = [dhaga.spawn(ev.wait) for _ in range(3)]
    dhaga.sleep(0)
    s = dhaga.stats()
    assert s["alive"] == 3 and s["parked"] == 3 and s["runnable"] == 0
    assert s["spawned"] == 3 and s["blocked"] == 0
    assert s["switches"] == 3  # each ran once, to its park, with no instrument installed
    ev.set()
    dhaga.joinall(ds)
    assert dhaga.stats()["switches"] == 6  # and once more each, to finish
    assert dhaga.stats()["alive"] == 0


def test_stats_counts_switches_inside_a_running_batch_without_instruments():
    # A queue ping-pong of 100 round trips is 200 hand-offs, all inside one batch: the count
    # read from a dhaga includes the running batch's, although the kernel adds it up per batch.
    def body():
        a, b = Queue(), Queue()

        def pinger():
            for i in range(100):
                a.put(i)
                b.get()

        def ponger():
            for _ in range(100):
                b.put(a.get())

        before = dhaga.stats()["switches"]
        dhaga.joinall([dhaga.spawn(pinger), dhaga.spawn(ponger)])
        return dhaga.stats()["switches"] - before

    assert 200 <= dhaga.run(body) <= 210


# ---------------------------------------------------------------------------- loop lag
HOG = 0.05  # seconds a dhaga holds its thread below (asserted as a lower bound only)


def test_stats_reports_loop_lag_without_a_monitor(each_loop):
    from dhaga.monitor._watchdog import stats_of

    def fair():
        for _ in range(3):
            dhaga.sleep(0)

    assert dhaga.stats()["loop_lag_p50"] is None  # nothing has run yet
    dhaga.joinall([dhaga.spawn(fair) for _ in range(10)])
    s = dhaga.stats()
    assert stats_of(dhaga.get_scheduler()) is None  # no monitor has ever probed this one
    assert s["loop_lag_p50"] is not None and s["loop_lag_p99"] is not None
    assert 0 <= s["loop_lag_p50"] <= s["loop_lag_p99"]


def test_a_dhaga_holding_the_loop_raises_loop_lag_p99_without_a_monitor(each_loop):
    ran = []

    def other():
        dhaga.sleep(0)
        ran.append(1)

    # The hog runs while both others are runnable: they wait for it, and so does the loop.
    dhaga.joinall([dhaga.spawn(other), dhaga.spawn(_block_thread, HOG), dhaga.spawn(other)])
    assert ran == [1, 1]
    assert dhaga.stats()["loop_lag_p99"] >= HOG


def test_loop_lag_read_inside_a_batch_counts_that_batch_so_far(each_loop):
    def hog_then_look():
        _block_thread(HOG)
        return dhaga.stats()["loop_lag_p99"]

    assert dhaga.run(hog_then_look) >= HOG


def test_loop_lag_takes_the_larger_of_the_batches_and_the_monitors_probes():
    from dhaga.monitor import _stats, _watchdog

    sched = dhaga.get_scheduler()
    sched._lags.clear()
    sched._lags.extend([0.001] * 10)
    track = _watchdog._Track()
    track.lags.extend([0.002] * 10)
    _watchdog._tracks[sched] = track
    try:
        assert _stats.loop_lag(sched) == (0.002, 0.002)
        sched._lags.append(1.0)  # one long batch: the probes never saw it
        assert _stats.loop_lag(sched) == (0.002, 1.0)
        s = dhaga.stats()
        assert (s["loop_lag_p50"], s["loop_lag_p99"]) == (0.002, 1.0)
    finally:
        del _watchdog._tracks[sched]
    assert _stats.loop_lag(sched) == (0.001, 1.0)


@pytest.mark.parametrize("samples, expected", [
    ([], [None, None]),
    ([0.5], [0.5, 0.5]),
    ([3.0, 1.0, 2.0], [2.0, 3.0]),
    ([float(i) for i in range(1000)], [500.0, 990.0]),
])  # fmt: skip
def test_percentiles_are_nearest_rank(samples, expected):
    from dhaga.monitor._stats import percentiles

    assert percentiles(samples, 0.50, 0.99) == expected
