"""dhaga.pool: Pool's bound, map/imap, join/kill; GreenExecutor beyond the stdlib's own cases."""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import threading

import pytest

import dhaga
from dhaga import Killed, Timeout
from dhaga.pool import GreenExecutor, GreenFuture, Pool
from dhaga.sync import Event, Queue
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")


class Gauge:
    """Counts calls running at once."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    def __enter__(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        self.now -= 1


# ---------------------------------------------------------------------- Pool
def test_pool_bounds_concurrency_and_spawn_waits_while_full():
    pool, gauge, gate = Pool(3), Gauge(), Event()

    def job(i):
        with gauge:
            gate.wait()
        return i

    first = [pool.spawn(job, i) for i in range(3)]
    assert pool.free_count() == 0 and pool.full() and len(pool) == 3
    extra = dhaga.spawn(pool.spawn, job, 3)  # waits for a slot
    settle()
    assert not extra.done() and gauge.now == 3
    gate.set()
    fourth = extra.result(timeout=5)
    assert pool.join(timeout=5) is True
    assert [d.result() for d in [*first, fourth]] == [0, 1, 2, 3]
    assert gauge.peak == 3 and pool.free_count() == 3 and len(pool) == 0


def test_pool_spawners_waiting_for_slots_are_served_fifo():
    pool, gate, order = Pool(1), Event(), []
    pool.spawn(gate.wait)
    spawners = []
    for i in range(4):
        spawners.append(dhaga.spawn(pool.spawn, order.append, i))
        settle()
    gate.set()
    pool.join(timeout=5)
    dhaga.joinall(spawners)
    assert order == [0, 1, 2, 3]


def test_pool_map_and_imap_keep_input_order():
    pool = Pool(4)

    def slow_square(x):
        dhaga.sleep(0.001 * (5 - x % 5))  # later inputs finish first
        return x * x

    assert pool.map(slow_square, range(12)) == [x * x for x in range(12)]
    assert list(pool.imap(pow, [2, 3, 4], [2, 2, 2])) == [4, 9, 16]
    assert pool.join(timeout=5)


def test_pool_imap_unordered_yields_in_completion_order():
    pool, gates = Pool(3), [Event() for _ in range(3)]

    def job(i):
        gates[i].wait()
        return i

    it = pool.imap_unordered(job, range(3))

    def release_backwards():
        for g in reversed(gates):
            settle()
            g.set()

    dhaga.spawn(release_backwards)
    assert list(it) == [2, 1, 0]


def test_pool_imap_is_bounded_by_the_pool_and_lazy_to_consume():
    pool, gauge = Pool(2), Gauge()

    def job(x):
        with gauge:
            dhaga.sleep(0)
        return x

    assert sorted(pool.imap_unordered(job, range(20))) == list(range(20))
    assert gauge.peak == 2


def test_pool_map_raises_the_first_failure_and_stops_feeding():
    pool, started = Pool(2), []

    def job(x):
        started.append(x)
        if x == 1:
            raise ValueError("bad input 1")
        dhaga.sleep(0)
        return x

    def body():
        with pytest.raises(ValueError, match="bad input 1"):
            pool.map(job, range(1000))
        n = len(started)
        assert pool.join(timeout=5)
        return n

    n = dhaga.run(body)
    # The feeder was stopped: at most the calls already in the pool's slots ran afterwards.
    assert n <= len(started) <= n + pool.size < 1000


def test_pool_imap_reports_a_failing_input_iterable():
    def inputs():
        yield 1
        raise KeyError("broken input")

    with pytest.raises(KeyError):
        list(Pool(2).imap(abs, inputs()))


def test_pool_join_timeout_and_raise_error():
    pool, gate = Pool(2), Event()
    pool.spawn(gate.wait)
    assert pool.join(timeout=0.001) is False
    gate.set()
    pool.spawn(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        pool.join(timeout=5, raise_error=True)
    assert pool.join(timeout=5, raise_error=True) is True  # reported once


def test_pool_kill_kills_every_member_and_frees_the_slots():
    pool, cleaned = Pool(3), []

    def member():
        try:
            dhaga.sleep(60)
        finally:
            cleaned.append(1)

    ds = [pool.spawn(member) for _ in range(3)]
    settle()
    pool.kill(timeout=5)
    assert all(d.killed() for d in ds) and cleaned == [1, 1, 1]
    assert pool.free_count() == 3 and pool.join(timeout=0)


def test_pool_apply_runs_inline_inside_the_pool():
    pool = Pool(1)

    def outer():
        return pool.apply(lambda: "inner", ()) + "+outer"

    assert pool.apply(outer) == "inner+outer"
    assert pool.wait_available(timeout=1) is True


def test_unbounded_pool():
    pool = Pool()
    ds = [pool.spawn(dhaga.sleep, 0) for _ in range(100)]
    assert pool.free_count() > 10**6
    assert pool.join(timeout=5) and all(d.done() for d in ds)


def test_pool_rejects_bad_size():
    with pytest.raises(ValueError):
        Pool(0)


# ---------------------------------------------------------------------- GreenExecutor
@pytest.fixture(params=["top-level", "in-dhaga"])
def runner(request):
    """Run a test body at the top level, or inside a dhaga."""
    if request.param == "top-level":
        return lambda fn: fn()
    return lambda fn: dhaga.run(fn)


def test_executor_calls_run_concurrently_as_dhagas(runner):
    def body():
        gate = Event()
        with GreenExecutor(max_workers=200) as ex:
            fs = [ex.submit(gate.wait, 5) for _ in range(200)]
            settle()
            assert not any(f.done() for f in fs)  # all 200 parked at once
            assert all(f.running() for f in fs)
            gate.set()
        assert [f.result() for f in fs] == [True] * 200
        return True

    assert runner(body)


def test_executor_max_workers_bounds_concurrency_fifo(runner):
    def body():
        gauge, order = Gauge(), []

        def job(i):
            with gauge:
                dhaga.sleep(0.001)
            order.append(i)
            return i

        with GreenExecutor(max_workers=3) as ex:
            fs = [ex.submit(job, i) for i in range(12)]
        assert [f.result() for f in fs] == list(range(12))
        assert gauge.peak == 3 and order[:3] == [0, 1, 2]
        return True

    assert runner(body)


def test_other_dhagas_run_while_waiting_on_futures(runner):
    def body():
        ticks: list[int] = []

        def ticker():
            for i in range(5):
                ticks.append(i)
                dhaga.sleep(0)

        t = dhaga.spawn(ticker)
        with GreenExecutor(2) as ex:
            f = ex.submit(dhaga.sleep, 0.01)
            done, _ = cf.wait([f], timeout=5)
            assert done == {f}
        t.join()
        assert ticks == list(range(5))
        return True

    assert runner(body)


def test_wait_and_as_completed_mix_green_and_real_thread_futures(runner):
    def body():
        with GreenExecutor(2) as gex, cf.ThreadPoolExecutor(2) as tex:
            gate = threading.Event()
            green = gex.submit(lambda: (dhaga.sleep(0.001), "green")[1])
            real = tex.submit(lambda: gate.wait(5) and "thread")
            done, pending = cf.wait([green, real], return_when=cf.FIRST_COMPLETED, timeout=5)
            assert done == {green} and pending == {real}
            gate.set()
            assert sorted(f.result() for f in cf.as_completed([green, real], timeout=5)) == [
                "green", "thread"]
        return True

    assert runner(body)


def test_future_result_timeout_is_dhaga_timeout_and_futures_timeout():
    with GreenExecutor(1) as ex:
        gate = Event()
        f = ex.submit(gate.wait)
        with pytest.raises(cf.TimeoutError) as info:
            f.result(timeout=0.001)
        assert isinstance(info.value, Timeout)
        with pytest.raises(Timeout):
            f.exception(timeout=0.001)
        assert not f._done_callbacks  # the timed-out waits left nothing behind
        gate.set()
    assert f.result() is True and f.exception() is None


def test_future_waiter_killed_leaves_no_callback():
    with GreenExecutor(1) as ex:
        gate = Event()
        f = ex.submit(gate.wait)
        w = dhaga.spawn(f.result)
        settle()
        w.kill()
        assert w.killed() and not f._done_callbacks
        gate.set()


def test_each_call_runs_in_a_copy_of_its_submitters_context():
    var = contextvars.ContextVar("var", default="unset")
    with GreenExecutor(1) as ex:
        var.set("first")
        f1 = ex.submit(var.get)
        var.set("second")
        f2 = ex.submit(lambda: (var.set("changed inside"), var.get())[1])
        f3 = ex.submit(var.get)
    assert (f1.result(), f2.result(), f3.result()) == ("first", "changed inside", "second")
    assert var.get() == "second"


def test_submit_from_plain_threads_runs_there_and_results_cross_threads():
    ex = GreenExecutor(8)
    results: list[int] = []

    def plain(i):
        f = ex.submit(lambda: (dhaga.sleep(0.001), threading.get_ident())[1])
        results.append(f.result(timeout=10) == threading.get_ident())

    ts = [threading.Thread(target=plain, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=20)
    ex.shutdown(wait=True)
    assert results == [True] * 8


def test_futures_are_green_futures_and_cancel_before_start():
    with GreenExecutor(1) as ex:
        gate = Event()
        first = ex.submit(gate.wait)
        queued = ex.submit(lambda: "never")
        assert isinstance(queued, GreenFuture) and isinstance(queued, cf.Future)
        assert queued.cancel() and queued.cancelled()
        with pytest.raises(cf.CancelledError):
            queued.result()
        gate.set()
    assert first.result() is True


def test_killed_call_fails_only_its_future_and_frees_its_slot():
    with GreenExecutor(1) as ex:
        me = ex.submit(dhaga.current).result()
        assert isinstance(me, dhaga.Dhaga) and me.name.endswith("_0")
        box: list[dhaga.Dhaga] = []
        g = ex.submit(lambda: (box.append(dhaga.current()), dhaga.sleep(60)))
        queued = ex.submit(lambda: "queued ran")
        settle()
        assert g.running() and not queued.done()
        box[0].kill()
        assert isinstance(g.exception(timeout=5), Killed)
        assert queued.result(timeout=5) == "queued ran"  # the slot went on to the next call
        assert ex.submit(lambda: "still works").result(timeout=5) == "still works"


def test_shutdown_without_wait_then_work_finishes_when_the_loop_runs():
    ex = GreenExecutor(2)
    fs = [ex.submit(dhaga.sleep, 0.001) for _ in range(4)]
    ex.shutdown(wait=False)
    with pytest.raises(RuntimeError):
        ex.submit(abs, 1)
    done, pending = cf.wait(fs, timeout=5)
    assert len(done) == 4 and not pending


def test_pool_and_executor_from_a_queue_pipeline():
    q: Queue[int] = Queue(maxsize=2)
    out: list[int] = []

    def consumer():
        while (x := q.get()) is not None:
            out.append(x)

    with GreenExecutor(1) as ex:
        c = ex.submit(consumer)
        for i in range(10):
            q.put(i)
        q.put(None)
    assert c.result() is None and out == list(range(10))


def test_shutdown_runs_calls_queued_by_a_thread_that_has_ended():
    ex = GreenExecutor(max_workers=1)
    futs: list[cf.Future] = []

    def submit_and_leave():  # a plain thread that never waits for its calls
        futs.extend(ex.submit(threading.get_ident) for _ in range(3))

    t = threading.Thread(target=submit_and_leave)
    t.start()
    t.join(timeout=10)
    ex.shutdown(wait=True)  # its loop closed: the queued calls are run here
    me = threading.get_ident()
    assert [f.result(timeout=5) for f in futs[1:]] == [me, me]
    assert ex._nworkers == 0 and not ex._lanes


def test_asyncio_run_in_executor_accepts_a_green_executor():
    import asyncio

    ex = GreenExecutor(4)

    def blocking_style(x):
        dhaga.sleep(0.001)  # runs in a dhaga on the loop's own thread
        return x * 10

    async def main():
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(ex, blocking_style, i)
                                      for i in range(5)))

    assert dhaga.wait(main(), timeout=10) == [0, 10, 20, 30, 40]
    ex.shutdown()
