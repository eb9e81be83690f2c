"""CPython's expectations of ThreadPoolExecutor, checked against GreenExecutor.

Ported from Lib/test/test_concurrent_futures/ (executor.py, test_thread_pool.py,
test_shutdown.py, test_wait.py, test_as_completed.py, test_init.py, test_future.py): the
ThreadPoolExecutor cases, as pytest functions. What changes in the port: tasks block with dhaga
calls (dhaga.sleep, dhaga.sync) instead of time.sleep/threading, as migrated code does; the
waits are shorter; "threads" are worker dhagas. Every executor case runs twice: at the top level
of the thread, and inside a dhaga.
"""

from __future__ import annotations

import concurrent.futures as futures
import gc
import logging
import os
import re
import subprocess
import sys
import threading
import weakref
from concurrent.futures._base import (
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
    BrokenExecutor,
)

import pytest

import dhaga
from dhaga.pool import GreenExecutor, GreenFuture
from dhaga.sync import Event, Semaphore
from dhaga.testing import settle

WORKERS = 5


def create_future(state=PENDING, exception=None, result=None) -> GreenFuture:
    f = GreenFuture()
    f._state = state
    f._exception = exception
    f._result = result
    return f


PENDING_FUTURE = create_future(state=PENDING)
RUNNING_FUTURE = create_future(state=RUNNING)
CANCELLED_AND_NOTIFIED_FUTURE = create_future(state=CANCELLED_AND_NOTIFIED)
EXCEPTION_FUTURE = create_future(state=FINISHED, exception=OSError())
SUCCESSFUL_FUTURE = create_future(state=FINISHED, result=42)


def mul(x, y):
    return x * y


def capture(*args, **kwargs):
    return args, kwargs


class MyObject:
    def my_method(self):
        pass


def make_dummy_object(_):
    return MyObject()


def wait_and_raise(e):
    e.wait()
    raise Exception("this is an exception")


@pytest.fixture(params=["top-level", "in-dhaga"])
def run(request):
    """Run a test body at the top level of the thread, or inside a dhaga."""
    if request.param == "top-level":
        return lambda fn: fn()
    return dhaga.run


@pytest.fixture
def executor():
    ex = GreenExecutor(max_workers=WORKERS)
    yield ex
    ex.shutdown(wait=True)


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------------- executor.py
def test_submit(run, executor):
    run(lambda: (assert_eq(executor.submit(pow, 2, 8).result(), 256)))


def assert_eq(a, b):
    assert a == b


def test_submit_keyword(run, executor):
    def body():
        assert executor.submit(mul, 2, y=8).result() == 16
        assert executor.submit(capture, 1, self=2, fn=3).result() == ((1,), {"self": 2, "fn": 3})
        with pytest.raises(TypeError):
            executor.submit(fn=capture, arg=1)
        with pytest.raises(TypeError):
            executor.submit(arg=1)

    run(body)


def test_map(run, executor):
    def body():
        assert list(executor.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))
        assert list(executor.map(pow, range(10), range(10), chunksize=3)) == list(
            map(pow, range(10), range(10)))

    run(body)


def test_map_exception(run, executor):
    def body():
        i = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
        assert i.__next__() == (0, 1)
        assert i.__next__() == (0, 1)
        with pytest.raises(ZeroDivisionError):
            i.__next__()

    run(body)


def test_map_timeout(run, executor):
    def body():
        results = []
        with pytest.raises(futures.TimeoutError):
            for i in executor.map(dhaga.sleep, [0, 0, 0.3], timeout=0.05):
                results.append(i)
        assert results == [None, None]

    run(body)


def test_shutdown_race_issue12456(run, executor):
    def body():
        executor.map(str, [2] * (WORKERS + 1))
        executor.shutdown()

    run(body)


def test_no_stale_references(run, executor):
    def body():
        my_object = MyObject()
        collected = Event()
        my_object_callback = weakref.ref(my_object, lambda obj: collected.set())  # noqa: F841
        executor.submit(my_object.my_method)  # deliberately discarding the future
        del my_object
        assert collected.wait(timeout=5), "stale reference not collected"

    run(body)


def test_max_workers_negative():
    for number in (0, -1):
        with pytest.raises(ValueError, match="max_workers must be greater than 0"):
            GreenExecutor(max_workers=number)


def test_free_reference(run, executor):
    def body():
        for obj in executor.map(make_dummy_object, range(10)):
            wr = weakref.ref(obj)
            del obj
            gc.collect()
            assert wr() is None

    run(body)


# ---------------------------------------------------------------------- test_thread_pool.py
def test_map_submits_without_iteration(run, executor):
    def body():
        finished = []
        executor.map(finished.append, range(10))
        executor.shutdown(wait=True)
        assert sorted(finished) == list(range(10))

    run(body)


def test_default_workers():
    cpus = getattr(os, "process_cpu_count", os.cpu_count)()
    assert GreenExecutor()._max_workers == min(32, (cpus or 1) + 4)


def test_saturation(run):
    def body():
        executor = GreenExecutor(4)
        sem = Semaphore(0)
        for _ in range(15 * executor._max_workers):
            executor.submit(sem.acquire)
        settle()
        assert executor._nworkers == executor._max_workers
        for _ in range(15 * executor._max_workers):
            sem.release()
        executor.shutdown(wait=True)
        assert executor._nworkers == 0

    run(body)


def test_idle_worker_reuse(run):
    def body():
        executor = GreenExecutor()
        peak = []
        for a, b in ((21, 2), (6, 7), (3, 14)):
            assert executor.submit(mul, a, b).result() == 42
            peak.append(executor._nworkers)
        assert max(peak) <= 1  # sequential calls never needed a second worker
        executor.shutdown(wait=True)

    run(body)


def test_executor_map_current_future_cancel(run):
    def body():
        stop_event = Event()
        log = []

        def log_n_wait(ident):
            log.append(f"{ident=} started")
            try:
                stop_event.wait()
            finally:
                log.append(f"{ident=} stopped")

        with GreenExecutor(max_workers=1) as pool:
            fut = pool.submit(log_n_wait, ident="first")
            try:
                gen = pool.map(log_n_wait, ["second", "third"], timeout=0)
                try:
                    with pytest.raises(TimeoutError):
                        next(gen)
                finally:
                    gen.close()
            finally:
                stop_event.set()
            fut.result()
        assert log == ["ident='first' started", "ident='first' stopped"]

    run(body)


# ---------------------------------------------------------------------- test_shutdown.py
def test_run_after_shutdown(executor):
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 5)


SLEEP_AND_PRINT = """
import sys, dhaga
from dhaga.pool import GreenExecutor
def sleep_and_print(t, msg):
    dhaga.sleep(t)
    print(msg)
    sys.stdout.flush()
"""


def test_interpreter_shutdown_runs_pending_calls():
    proc = python(SLEEP_AND_PRINT + """
t = GreenExecutor(5)
t.submit(sleep_and_print, 0.05, "apple")
""")
    assert not proc.stderr, proc.stderr
    assert proc.stdout.strip() == b"apple"


def test_submit_after_interpreter_shutdown():
    proc = python("""
import atexit
@atexit.register
def run_last():
    try:
        t.submit(id, None)
    except RuntimeError:
        print("runtime-error")
        raise
from dhaga.pool import GreenExecutor
t = GreenExecutor(5)
""")
    assert b"RuntimeError: cannot schedule new futures" in proc.stderr
    assert proc.stdout.strip() == b"runtime-error"


def test_hang_issue12364(run, executor):
    def body():
        fs = [executor.submit(dhaga.sleep, 0.01) for _ in range(50)]
        executor.shutdown()
        for f in fs:
            f.result()

    run(body)


def test_cancel_futures(run, executor):
    def body():
        fs = [executor.submit(dhaga.sleep, 0.01) for _ in range(50)]
        settle()
        executor.shutdown(cancel_futures=True)
        cancelled = [fut for fut in fs if fut.cancelled()]
        assert len(cancelled) > 20
        others = [fut for fut in fs if not fut.cancelled()]
        for fut in others:
            assert fut.done() and fut.exception() is None
        assert len(others) > 0

    run(body)


def test_hang_gh83386_shutdown_without_wait_still_finishes_at_exit():
    proc = python(SLEEP_AND_PRINT + """
t = GreenExecutor(max_workers=3)
t.submit(sleep_and_print, 0.05, "apple")
t.shutdown(wait=False)
""")
    assert not proc.stderr, proc.stderr
    assert proc.stdout.strip() == b"apple"


def test_cancel_futures_wait_false():
    proc = python(SLEEP_AND_PRINT + """
t = GreenExecutor()
t.submit(sleep_and_print, .01, "apple")
t.shutdown(wait=False, cancel_futures=True)
""")
    assert not proc.stderr, proc.stderr
    assert proc.stdout.strip() in (b"apple", b"")


def test_hang_gh94440(run):
    def body():
        executor = GreenExecutor(max_workers=1)
        executor.submit(int).result()
        with dhaga.timeout(5):
            executor.submit(int).cancel()
            executor.shutdown(wait=True)

    run(body)


def test_workers_terminate(run, executor):
    def body():
        sem = Semaphore(0)
        for _ in range(3):
            executor.submit(sem.acquire)
        settle()
        assert executor._nworkers == 3
        for _ in range(3):
            sem.release()
        executor.shutdown()
        assert executor._nworkers == 0 and executor._idle.is_set()

    run(body)


def test_context_manager_shutdown(run):
    def body():
        with GreenExecutor(max_workers=5) as e:
            assert list(e.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        assert e._nworkers == 0 and not e._lanes

    run(body)


def test_del_shutdown(run):
    def body():
        executor = GreenExecutor(max_workers=5)
        res = executor.map(abs, range(-5, 5))
        del executor
        gc.collect()
        assert all(r == abs(v) for r, v in zip(res, range(-5, 5)))

    run(body)


def test_shutdown_no_wait(run):
    def body():
        executor = GreenExecutor(max_workers=5)
        res = executor.map(abs, range(-5, 5))
        executor.shutdown(wait=False)
        assert all(r == abs(v) for r, v in zip(res, range(-5, 5)))

    run(body)


def test_worker_names_assigned(run):
    def body():
        executor = GreenExecutor(max_workers=5, thread_name_prefix="SpecialPool")
        names = list(executor.map(lambda _: (dhaga.sleep(0.001), dhaga.current().name)[1],
                                  range(10)))
        executor.shutdown()
        assert names and all(re.match(r"^SpecialPool_[0-4]$", n) for n in names)

    run(body)


def test_worker_names_default(run):
    def body():
        executor = GreenExecutor(max_workers=5)
        names = list(executor.map(lambda _: (dhaga.sleep(0.001), dhaga.current().name)[1],
                                  range(10)))
        executor.shutdown()
        assert all(re.match(r"GreenExecutor-\d+_[0-4]$", n) for n in names), names

    run(body)


# ---------------------------------------------------------------------- test_wait.py
def test_20369(run, executor):
    def body():
        future = executor.submit(mul, 1, 2)
        done, not_done = futures.wait([future, future], return_when=futures.ALL_COMPLETED)
        assert done == {future} and not_done == set()

    run(body)


def test_first_completed(run, executor):
    def body():
        cancelled = create_future(state=futures._base.CANCELLED)
        event = Event()
        future1 = executor.submit(mul, 21, 2)
        future2 = executor.submit(event.wait)
        try:
            done, not_done = futures.wait([cancelled, future1, future2],
                                          return_when=futures.FIRST_COMPLETED)
            assert done == {future1} and not_done == {cancelled, future2}
        finally:
            event.set()
        future2.result()

    run(body)


def test_first_completed_some_already_completed(run, executor):
    def body():
        event = Event()
        future1 = executor.submit(event.wait)
        try:
            finished, pending = futures.wait(
                [CANCELLED_AND_NOTIFIED_FUTURE, SUCCESSFUL_FUTURE, future1],
                return_when=futures.FIRST_COMPLETED)
            assert finished == {CANCELLED_AND_NOTIFIED_FUTURE, SUCCESSFUL_FUTURE}
            assert pending == {future1}
        finally:
            event.set()
        future1.result()

    run(body)


def test_first_exception(run, executor):
    def body():
        event1, event2 = Event(), Event()
        try:
            future1 = executor.submit(mul, 2, 21)
            future2 = executor.submit(wait_and_raise, event1)
            future3 = executor.submit(event2.wait)

            def wait_for_future1():  # a plain thread: waits green on its own loop
                future1.result()
                event1.set()

            t = threading.Thread(target=wait_for_future1)
            t.start()
            finished, pending = futures.wait([future1, future2, future3],
                                             return_when=futures.FIRST_EXCEPTION)
            assert finished == {future1, future2} and pending == {future3}
            t.join(timeout=10)
        finally:
            event1.set()
            event2.set()
        future3.result()

    run(body)


def test_first_exception_some_already_complete(run, executor):
    def body():
        cancelled = create_future(state=futures._base.CANCELLED)
        event = Event()
        future1 = executor.submit(divmod, 21, 0)
        future2 = executor.submit(event.wait)
        try:
            finished, pending = futures.wait(
                [SUCCESSFUL_FUTURE, cancelled, CANCELLED_AND_NOTIFIED_FUTURE, future1, future2],
                return_when=futures.FIRST_EXCEPTION)
            assert finished == {SUCCESSFUL_FUTURE, CANCELLED_AND_NOTIFIED_FUTURE, future1}
            assert pending == {cancelled, future2}
        finally:
            event.set()
        future2.result()

    run(body)


def test_first_exception_one_already_failed(run, executor):
    def body():
        event = Event()
        future1 = executor.submit(event.wait)
        try:
            finished, pending = futures.wait([EXCEPTION_FUTURE, future1],
                                             return_when=futures.FIRST_EXCEPTION)
            assert finished == {EXCEPTION_FUTURE} and pending == {future1}
        finally:
            event.set()
        future1.result()

    run(body)


def test_all_completed(run, executor):
    def body():
        future1 = executor.submit(divmod, 2, 0)
        future2 = executor.submit(mul, 2, 21)
        finished, pending = futures.wait(
            [SUCCESSFUL_FUTURE, CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE, future1, future2],
            return_when=futures.ALL_COMPLETED)
        assert finished == {SUCCESSFUL_FUTURE, CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE,
                            future1, future2}
        assert pending == set()

    run(body)


def test_wait_timeout(run, executor):
    def body():
        event = Event()
        future = executor.submit(event.wait)
        try:
            finished, pending = futures.wait(
                [CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE, SUCCESSFUL_FUTURE, future],
                timeout=0.05, return_when=futures.ALL_COMPLETED)
            assert finished == {CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE, SUCCESSFUL_FUTURE}
            assert pending == {future}
        finally:
            event.set()
        future.result()

    run(body)


def test_pending_calls_race(run, executor):
    def body():
        event = Event()
        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            fs = {executor.submit(event.wait) for _ in range(100)}
            event.set()
            futures.wait(fs, return_when=futures.ALL_COMPLETED)
        finally:
            sys.setswitchinterval(old)
        assert all(f.done() for f in fs)

    run(body)


# ---------------------------------------------------------------------- test_as_completed.py
def test_as_completed_no_timeout(run, executor):
    def body():
        future1 = executor.submit(mul, 2, 21)
        future2 = executor.submit(mul, 7, 6)
        completed = set(futures.as_completed(
            [CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE, SUCCESSFUL_FUTURE, future1, future2]))
        assert completed == {CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE, SUCCESSFUL_FUTURE,
                             future1, future2}

    run(body)


def test_as_completed_future_times_out(run, executor):
    def body():
        already_completed = {CANCELLED_AND_NOTIFIED_FUTURE, EXCEPTION_FUTURE, SUCCESSFUL_FUTURE}
        for timeout in (0, 0.02):
            completed_futures = set()
            future = executor.submit(dhaga.sleep, 0.2)
            try:
                for f in futures.as_completed(already_completed | {future}, timeout):
                    completed_futures.add(f)
            except futures.TimeoutError:
                pass
            assert completed_futures == already_completed

    run(body)


def test_as_completed_duplicate_futures(run, executor):
    def body():
        import itertools

        future1 = executor.submit(dhaga.sleep, 0.01)
        completed = list(futures.as_completed(itertools.repeat(future1, 3)))
        assert len(completed) == 1

    run(body)


def test_as_completed_free_reference_yielded_future(run):
    def body():
        futures_list = [GreenFuture() for _ in range(8)]
        futures_list.append(create_future(state=CANCELLED_AND_NOTIFIED))
        futures_list.append(create_future(state=FINISHED, result=42))
        with pytest.raises(futures.TimeoutError):
            for future in futures.as_completed(futures_list, timeout=0):
                futures_list.remove(future)
                wr = weakref.ref(future)
                del future
                gc.collect()
                assert wr() is None
        futures_list[0].set_result("test")
        for future in futures.as_completed(futures_list):
            futures_list.remove(future)
            wr = weakref.ref(future)
            del future
            gc.collect()
            assert wr() is None
            if futures_list:
                futures_list[0].set_result("test")

    run(body)


def test_correct_timeout_exception_msg(run):
    def body():
        futures_list = [CANCELLED_AND_NOTIFIED_FUTURE, PENDING_FUTURE, RUNNING_FUTURE,
                        SUCCESSFUL_FUTURE]
        with pytest.raises(futures.TimeoutError) as cm:
            list(futures.as_completed(futures_list, timeout=0))
        assert str(cm.value) == "2 (of 4) futures unfinished"

    run(body)


# ---------------------------------------------------------------------- test_init.py
INITIALIZER_STATUS = "uninitialized"


def init(x):
    global INITIALIZER_STATUS
    INITIALIZER_STATUS = x


def get_init_status():
    return INITIALIZER_STATUS


def init_fail():
    dhaga.sleep(0.01)  # let some futures be scheduled
    raise ValueError("error in initializer")


def test_initializer(run):
    def body():
        global INITIALIZER_STATUS
        INITIALIZER_STATUS = "uninitialized"
        with GreenExecutor(2, initializer=init, initargs=("initialized",)) as executor:
            fs = [executor.submit(get_init_status) for _ in range(2)]
            assert [f.result() for f in fs] == ["initialized"] * 2

    run(body)


def test_failing_initializer(run, caplog):
    def body():
        executor = GreenExecutor(2, initializer=init_fail)
        with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
            try:
                future = executor.submit(get_init_status)
            except BrokenExecutor:
                pass
            else:
                with pytest.raises(BrokenExecutor):
                    future.result()
            assert executor._broken
            with pytest.raises(BrokenExecutor):
                executor.submit(get_init_status)
        assert any("ValueError: error in initializer" in r.exc_text or ""
                   for r in caplog.records if r.exc_text), caplog.text
        executor.shutdown(wait=True)

    run(body)


# ---------------------------------------------------------------------- test_future.py
def test_done_callbacks_see_result_exception_and_cancel():
    seen = []
    f = GreenFuture()
    f.add_done_callback(lambda fut: seen.append(fut.result()))
    f.set_result(5)
    g = GreenFuture()
    g.add_done_callback(lambda fut: seen.append(fut.exception().args))
    g.set_exception(Exception("test"))
    h = GreenFuture()
    h.add_done_callback(lambda fut: seen.append(fut.cancelled()))
    assert h.cancel()
    f.add_done_callback(lambda fut: seen.append("already"))
    assert seen == [5, ("test",), True, "already"]


def test_done_callback_raises_is_logged(caplog):
    f, called = GreenFuture(), []
    f.add_done_callback(lambda _: 1 / 0)
    f.add_done_callback(lambda _: called.append(True))
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        f.set_result(5)
    assert called == [True] and "exception calling callback for" in caplog.text


def test_future_repr_and_states():
    assert re.match(r"<GreenFuture at 0x[0-9a-f]+ state=pending>", repr(PENDING_FUTURE))
    assert re.match(r"<GreenFuture at 0x[0-9a-f]+ state=finished returned int>",
                    repr(SUCCESSFUL_FUTURE))
    assert not PENDING_FUTURE.done() and RUNNING_FUTURE.running()
    assert CANCELLED_AND_NOTIFIED_FUTURE.cancelled() and EXCEPTION_FUTURE.done()


def test_result_and_exception_with_timeout(run):
    def body():
        for f in (PENDING_FUTURE, RUNNING_FUTURE):
            with pytest.raises(futures.TimeoutError):
                f.result(timeout=0)
            with pytest.raises(futures.TimeoutError):
                f.exception(timeout=0)
        with pytest.raises(futures.CancelledError):
            CANCELLED_AND_NOTIFIED_FUTURE.result(timeout=0)
        with pytest.raises(OSError):
            EXCEPTION_FUTURE.result(timeout=0)
        assert isinstance(EXCEPTION_FUTURE.exception(timeout=0), OSError)
        assert SUCCESSFUL_FUTURE.result(timeout=0) == 42
        assert not PENDING_FUTURE._done_callbacks

    run(body)


def test_result_set_or_cancelled_from_another_thread(run):
    def body():
        f1, f2 = GreenFuture(), GreenFuture()
        # Runs once this thread is parked in result(): then a plain thread completes it.
        dhaga.spawn(lambda: threading.Thread(target=f1.set_result, args=(42,)).start())
        assert f1.result(timeout=5) == 42
        dhaga.spawn(lambda: threading.Thread(target=f2.cancel).start())
        with pytest.raises(futures.CancelledError):
            f2.result(timeout=5)

    run(body)


def test_multiple_set_result_and_exception():
    f = GreenFuture()
    f.set_result(1)
    with pytest.raises(futures.InvalidStateError):
        f.set_result(2)
    assert f.result() == 1
    g, e = GreenFuture(), ValueError()
    g.set_exception(e)
    with pytest.raises(futures.InvalidStateError):
        g.set_exception(Exception())
    assert g.exception() is e
