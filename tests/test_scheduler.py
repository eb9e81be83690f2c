"""The core API of shared/API.md: spawning, joining, results, sleeping, killing, threads."""

from __future__ import annotations

import contextvars
import gc
import logging
import threading
import time
import weakref

import pytest

import dhaga
from dhaga import Killed, Timeout
from dhaga.scheduler import Dhaga, _Worker
from dhaga.sync import Event
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")


def test_run_returns_value_and_reraises():
    assert dhaga.run(lambda a, b=0: a + b, 2, b=3) == 5

    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        dhaga.run(boom)


def test_spawn_runs_at_next_scheduling_point_not_at_once():
    ran = []
    d = dhaga.spawn(ran.append, 1)
    assert ran == [] and not d.done()
    assert d.join() is True
    assert ran == [1] and d.done()


def test_spawn_later_starts_after_delay():
    order = []
    start = time.monotonic()
    later = dhaga.spawn_later(0.05, lambda: order.append(("later", time.monotonic() - start)))
    now = dhaga.spawn(lambda: order.append(("now", 0)))
    dhaga.joinall([later, now])
    assert [name for name, _ in order] == ["now", "later"]
    assert order[1][1] >= 0.05


def test_sleep_zero_lets_every_other_runnable_dhaga_run_once():
    trace = []

    def worker(name):
        for i in range(3):
            trace.append((name, i))
            dhaga.sleep(0)

    dhaga.joinall([dhaga.spawn(worker, n) for n in "abc"])
    assert trace == [(n, i) for i in range(3) for n in "abc"]


def test_busy_sleep_zero_loop_does_not_starve_others_or_timers():
    stop = Event()
    spins = [0]

    def spinner():
        while not stop.is_set():
            spins[0] += 1
            dhaga.sleep(0)

    s = dhaga.spawn(spinner)
    t = dhaga.spawn_later(0.02, stop.set)  # a timer must still fire
    dhaga.joinall([s, t], timeout=10)
    assert spins[0] > 0


def test_sleep_duration_and_top_level_sleep():
    start = time.monotonic()
    dhaga.sleep(0.02)
    assert time.monotonic() - start >= 0.02


def test_current_inside_and_outside():
    assert dhaga.current() is None
    d = dhaga.spawn(dhaga.current)
    assert d.result() is d


def test_join_timeout_returns_false_then_true():
    ev = Event()
    d = dhaga.spawn(ev.wait)
    assert d.join(timeout=0.01) is False
    ev.set()
    assert d.join(timeout=5) is True


def test_result_and_exception():
    ok = dhaga.spawn(lambda: 7)
    bad = dhaga.spawn(lambda: 1 / 0)
    assert ok.result() == 7 and ok.exception() is None
    assert isinstance(bad.exception(), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        bad.result()


def test_result_timeout_raises_timeout():
    ev = Event()
    d = dhaga.spawn(ev.wait)
    with pytest.raises(Timeout):
        d.result(timeout=0.01)
    ev.set()
    assert d.result() is True


def test_done_name_and_callbacks():
    seen = []
    d = dhaga.spawn(lambda: "v")
    d.name = "worker-1"
    assert d.name == "worker-1" and "worker-1" in repr(d)
    d.add_done_callback(lambda x: seen.append(("before", x.result())))
    assert not d.done()
    d.join()
    assert d.done()
    d.add_done_callback(lambda x: seen.append(("after", x.result())))
    assert seen == [("before", "v"), ("after", "v")]


def test_default_names_are_unique():
    a, b = dhaga.spawn(int), dhaga.spawn(int)
    assert a.name != b.name and a.name.startswith("int-")
    dhaga.joinall([a, b])


def test_default_names_say_what_runs():
    def fetch_page():
        pass

    class Handler:
        def handle(self):
            pass

    d = dhaga.spawn(fetch_page)
    e = dhaga.spawn(Handler().handle)
    assert d.name == f"test_default_names_say_what_runs.<locals>.fetch_page-{d._id}"
    assert e.name.startswith("test_default_names_say_what_runs.<locals>.Handler.handle-")
    dhaga.joinall([d, e])
    assert d.name.endswith(f"fetch_page-{d._id}")  # fixed once read, also after it finished


def test_dhaga_cannot_be_constructed_directly():
    with pytest.raises(TypeError):
        Dhaga(print)


def test_contextvars_are_a_copy_of_the_spawners():
    var = contextvars.ContextVar("var", default="unset")
    var.set("parent")

    def child():
        seen = var.get()
        var.set("child")
        return seen, var.get()

    assert dhaga.spawn(child).result() == ("parent", "child")
    assert var.get() == "parent"


def test_contextvars_do_not_leak_between_reused_workers():
    var = contextvars.ContextVar("leak", default="clean")

    def dirty():
        var.set("dirty")

    def check():
        return var.get()

    dhaga.spawn(dirty).join()
    assert dhaga.spawn(check).result() == "clean"


def test_unjoined_failure_is_logged_once_with_traceback(dhaga_log):
    def fails_loudly():
        raise ValueError("nobody joined me")

    dhaga.spawn(fails_loudly)
    settle()
    gc.collect()
    records = [r for r in dhaga_log.records if "never joined" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info[0] is ValueError
    assert "fails_loudly" in dhaga_log.text


def test_joined_failure_is_not_logged(dhaga_log):
    d = dhaga.spawn(lambda: 1 / 0)
    settle()
    with pytest.raises(ZeroDivisionError):
        d.result()
    del d
    gc.collect()
    assert "never joined" not in dhaga_log.text


def test_killed_dhaga_is_not_logged(dhaga_log):
    d = dhaga.spawn(dhaga.sleep, 10)
    settle()
    d.kill(block=False)
    settle()
    del d
    gc.collect()
    assert "never joined" not in dhaga_log.text


def test_blocking_in_worker_thread_top_level():
    out = {}

    def thread_main():
        def child(x):
            dhaga.sleep(0.001)
            return x * 2

        out["run"] = dhaga.run(child, 21)
        d = dhaga.spawn(child, 5)
        dhaga.sleep(0.001)
        out["join"] = d.result()
        out["sched"] = dhaga.get_scheduler()

    t = threading.Thread(target=thread_main)
    t.start()
    t.join(10)
    assert out["run"] == 42 and out["join"] == 10
    assert out["sched"] is not dhaga.get_scheduler()


def test_each_thread_has_its_own_scheduler_and_loop():
    scheds = []

    def grab():
        s = dhaga.get_scheduler()
        scheds.append((s, s.loop, s.thread_id))

    threads = [threading.Thread(target=grab) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s, _, _ in scheds}) == 3
    assert len({id(loop) for _, loop, _ in scheds}) == 3


def test_submit_from_eight_threads_at_once():
    sched = dhaga.get_scheduler()
    barrier = threading.Barrier(8)
    results = {}

    def submitter(i):
        barrier.wait()
        futs = [sched.submit(lambda a, b: (dhaga.current() is not None, a * b), i, k) for k in range(50)]
        results[i] = [f.result(timeout=30) for f in futs]

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    # This thread's loop must run for the submitted dhagas to start: block here until done.
    deadline = time.monotonic() + 30
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        dhaga.sleep(0.005)
    for t in threads:
        t.join(1)
    assert sorted(results) == list(range(8))
    for i, res in results.items():
        assert res == [(True, i * k) for k in range(50)]


def test_submit_propagates_exceptions_and_runs_on_owner_thread():
    sched = dhaga.get_scheduler()
    owner = threading.get_ident()
    box = {}

    def from_thread():
        box["tid"] = sched.submit(threading.get_ident)
        box["err"] = sched.submit(lambda: 1 / 0)

    t = threading.Thread(target=from_thread)
    t.start()
    t.join()
    assert dhaga.wait(box["tid"], timeout=10) == owner
    with pytest.raises(ZeroDivisionError):
        dhaga.wait(box["err"], timeout=10)


def test_hundred_thousand_dhagas_alive_at_once():
    ev = Event()
    n = 100_000
    ds = [dhaga.spawn(ev.wait) for _ in range(n)]
    settle()
    assert dhaga.get_scheduler().alive == n
    assert sum(d.done() for d in ds) == 0
    ev.set()
    dhaga.joinall(ds)
    assert all(d.result() is True for d in ds)
    assert dhaga.get_scheduler().alive == 0


def test_no_leaks_after_ten_thousand_cycles():
    class Payload:
        pass

    refs, handles = [], []
    busy_before = {id(g) for g in gc.get_objects() if isinstance(g, _Worker) and g.task is not None}

    def work(p):
        dhaga.sleep(0)
        return p

    for _ in range(10_000):
        p = Payload()
        refs.append(weakref.ref(p))
        d = dhaga.spawn(work, p)
        handles.append(weakref.ref(d))
        assert d.result() is p
        del p, d
    gc.collect()
    assert sum(r() is not None for r in refs) == 0  # results, args, frames all released
    assert sum(h() is not None for h in handles) == 0  # no handle kept by the scheduler
    assert dhaga.get_scheduler().alive == 0
    busy = [g for g in gc.get_objects() if isinstance(g, _Worker) and g.task is not None]
    assert [g for g in busy if id(g) not in busy_before] == []


def test_finished_dhaga_drops_function_and_greenlet():
    d = dhaga.spawn(lambda: 1)
    d.join()
    assert d._fn is None and d._gr is None and d._ctx is None and d._args is None


def test_idle_workers_are_bounded():
    from dhaga._core.workers import MAX_IDLE_WORKERS

    ev = Event()
    ds = [dhaga.spawn(ev.wait) for _ in range(MAX_IDLE_WORKERS + 500)]
    settle()
    ev.set()
    dhaga.joinall(ds)
    assert len(dhaga.get_scheduler()._idle) <= MAX_IDLE_WORKERS


def test_blocking_in_coroutine_on_loop_raises_blocking_error():
    async def coro():
        with pytest.raises(dhaga.BlockingError, match="dhaga.spawn|green"):
            dhaga.sleep(0)
        with pytest.raises(dhaga.BlockingError):
            Event().wait(0.01)
        return "checked"

    assert dhaga.wait(coro()) == "checked"


def test_blocking_in_loop_callback_raises_blocking_error():
    sched = dhaga.get_scheduler()
    box = []

    def cb():
        try:
            dhaga.sleep(0)
        except dhaga.BlockingError as e:
            box.append(e)

    sched.loop.call_soon(cb)
    dhaga.sleep(0)  # one loop iteration: callbacks queued before it run first
    assert len(box) == 1


def test_spawn_from_coroutine_on_the_loop():
    async def coro():
        d = dhaga.spawn(lambda: dhaga.current() is not None)
        return await d

    assert dhaga.wait(coro()) is True


def test_errors_hierarchy():
    assert issubclass(Timeout, TimeoutError) and issubclass(Timeout, dhaga.DhagaError)
    assert issubclass(Killed, BaseException) and not issubclass(Killed, Exception)
    assert not issubclass(dhaga.BlockingError, AssertionError)


def test_use_loop_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="unknown loop"):
        dhaga.use_loop("twisted")


def test_loop_kind_is_honoured(each_loop):
    name = type(dhaga.get_scheduler().loop).__module__
    assert ("uvloop" in name) == (each_loop == "uvloop")


def test_failed_done_callback_is_logged_and_others_still_run(dhaga_log):
    seen = []
    d = dhaga.spawn(int)
    d.add_done_callback(lambda _: 1 / 0)
    d.add_done_callback(lambda _: seen.append(1))
    d.join()
    assert seen == [1]
    assert "done callback" in dhaga_log.text


def test_log_level_of_unjoined_failure_is_error(dhaga_log):
    dhaga.spawn(lambda: 1 / 0)
    settle()
    gc.collect()
    assert any(r.levelno == logging.ERROR for r in dhaga_log.records)


def test_format_stacks_shows_where_each_dhaga_is_blocked():
    from dhaga.scheduler import format_stacks

    ev = Event()

    def parked_right_here():
        ev.wait()

    d = dhaga.spawn(parked_right_here)
    settle()
    text = format_stacks()
    assert "parked_right_here" in text and d.name in text
    ev.set()
    d.join()
    assert "parked_right_here" not in format_stacks()


def test_timeout_dump_hook_includes_dhaga_stacks():
    import pytest_timeout

    assert pytest_timeout.dump_stacks.__name__ == "_dump_all"


def test_worker_thread_loop_is_closed_when_the_thread_ends():
    loops = []

    def thread_main():
        dhaga.run(dhaga.sleep, 0)
        loops.append(dhaga.get_scheduler().loop)

    t = threading.Thread(target=thread_main)
    t.start()
    t.join()
    gc.collect()
    assert loops and loops[0].is_closed()


def test_top_level_waiter_resumes_without_waiting_for_a_long_drain():
    ev, log = Event(), []

    def busy():
        ev.set()
        for i in range(100):
            log.append(i)
            dhaga.sleep(0)

    d = dhaga.spawn(busy)
    ev.wait()
    assert len(log) < 100  # top-level code ran before the busy dhaga finished
    d.join()


def test_done_callback_that_blocks_gets_blocking_error(dhaga_log):
    errors = []

    def cb(_):
        try:
            dhaga.sleep(0)
        except dhaga.BlockingError as e:
            errors.append(e)

    d = dhaga.spawn(int)
    d.add_done_callback(cb)
    d.join()
    assert len(errors) == 1


def test_each_dhaga_keeps_its_context_across_parks():
    var = contextvars.ContextVar("own", default="unset")
    seen = []

    def body(name):
        var.set(name)
        dhaga.sleep(0)  # the others run (and set their own) while this one is parked
        seen.append((name, var.get()))

    dhaga.joinall([dhaga.spawn(body, n) for n in ("a", "b", "c")])
    assert sorted(seen) == [("a", "a"), ("b", "b"), ("c", "c")]
    assert var.get() == "unset"


def test_done_callbacks_run_outside_the_finished_dhagas_context():
    var = contextvars.ContextVar("cb", default="outside")
    got = []

    def body():
        var.set("inside")

    d = dhaga.spawn(body)
    d.add_done_callback(lambda _: got.append(var.get()))
    d.join()
    settle()
    assert got == ["outside"]
