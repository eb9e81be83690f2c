"""dhaga.Deadlock: raised when nothing can ever wake a top-level wait, and never while a wake is
still possible, on asyncio's loop and on uvloop. Each scenario runs in a fresh interpreter:
pytest's own signal handler and the threads other tests leave behind would (rightly) stop the
detector from concluding anything."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import LOOPS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = """
import asyncio, os, signal, subprocess, sys, threading, time
import dhaga
import dhaga._core.deadlock
from dhaga.sync import Event, Lock, Queue

found = []  # each time the loop was about to sleep for good: what could still wake it
_real_wake_source = dhaga._core.deadlock._wake_source
dhaga._core.deadlock._wake_source = lambda *a: found.append(_real_wake_source(*a)) or found[-1]
"""


@pytest.fixture(params=LOOPS)
def loop(request):
    """The event loop each scenario runs on."""
    return request.param


def run_script(body: str, loop: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("DHAGA_MONITOR", None)
    code = PRELUDE + f"dhaga.use_loop({loop!r})\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, env=env, cwd=ROOT)


def expect_deadlock(body: str, loop: str) -> str:
    body = "try:\n" + textwrap.indent(textwrap.dedent(body), "    ") + """
except dhaga.Deadlock as e:
    print("DEADLOCK", len(e.waits))
    print(e)
else:
    print("NO DEADLOCK")
"""
    proc = run_script(body, loop)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("DEADLOCK"), proc.stdout + proc.stderr
    return proc.stdout


def expect_completes(body: str, result: str, loop: str) -> None:
    proc = run_script(body, loop)
    assert proc.returncode == 0, proc.stderr
    assert "Deadlock" not in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == result, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- raised
def test_run_of_a_get_nothing_will_ever_put_raises_deadlock(loop):
    out = expect_deadlock("dhaga.run(lambda: Queue().get())", loop)
    assert "DEADLOCK 2" in out
    assert "<lambda>-1 waits on <Queue size=0 maxsize=0>, at <string>:" in out
    assert "<top level> waits on <Dhaga <lambda>-1 parked>" in out


def test_queue_join_with_a_missing_task_done_raises_deadlock(loop):
    out = expect_deadlock("""
        q = Queue()
        def worker():
            while True:
                q.get()  # forgets q.task_done()
        def main():
            dhaga.spawn(worker)
            q.put("job")
            q.join()
        dhaga.run(main)
    """, loop)
    assert "worker-2 waits on <Queue size=0 maxsize=0>" in out
    assert "main-1 waits on join() of <Queue size=0 maxsize=0> (1 tasks not done)" in out


def test_a_top_level_blocking_call_raises_deadlock(loop):
    out = expect_deadlock("Event().wait()", loop)
    assert "<top level> waits on <Event unset waiters=1>" in out


def test_locks_taken_in_opposite_orders_raise_deadlock_naming_both(loop):
    out = expect_deadlock("""
        a, b = Lock(), Lock()
        a_held, b_held = Event(), Event()
        def one():
            with a:
                a_held.set(); b_held.wait()
                with b: pass
        def two():
            with b:
                b_held.set(); a_held.wait()
                with a: pass
        dhaga.joinall([dhaga.spawn(one), dhaga.spawn(two)])
    """, loop)
    assert "one-1 waits on <Lock locked waiters=1>" in out
    assert "two-2 waits on <Lock locked waiters=1>" in out


def test_deadlock_found_once_the_last_timer_has_fired(loop):
    out = expect_deadlock("""
        def main():
            dhaga.sleep(0.05)
            Queue().get()
        dhaga.run(main)
    """, loop)
    assert "main-1 waits on <Queue" in out


def test_an_idle_socket_registration_does_not_hide_a_deadlock(loop):
    out = expect_deadlock("""
        import dhaga.net
        a, b = dhaga.net.socketpair()
        def main():
            b.sendall(b"x")
            assert a.recv(1) == b"x"  # a's fd stays registered, with no reader waiting
            Queue().get()
        dhaga.run(main)
    """, loop)
    assert "main-1 waits on <Queue" in out


def test_deadlock_found_after_checks_that_saw_a_possible_wake(loop):
    # On uvloop the loop is checked at growing intervals: while the child has not written,
    # each check finds the watched fd; the deadlock that follows is found at a later one.
    out = expect_deadlock("""
        import dhaga.net
        child = subprocess.Popen([sys.executable, "-c", "print('x')"], stdout=subprocess.PIPE)
        def main():
            dhaga.net.wait_readable(child.stdout.fileno())
            child.stdout.readline()
            child.wait()
            Queue().get()
        dhaga.run(main)
    """, loop)
    assert "main-1 waits on <Queue" in out


@pytest.mark.parametrize("loop", ["uvloop"])
def test_libuv_pool_threads_left_by_a_lookup_do_not_hide_a_deadlock(loop):
    pytest.importorskip("uvloop")
    out = expect_deadlock("""
        loop = dhaga.get_scheduler().loop
        loop.run_until_complete(loop.getaddrinfo("127.0.0.1", 80))  # starts libuv's pool
        assert any(open(f"/proc/self/task/{t}/comm").read().strip() == "libuv-worker"
                   for t in os.listdir("/proc/self/task"))
        dhaga.run(lambda: Queue().get())
    """, loop)
    assert "<lambda>-1 waits on <Queue" in out


# ---------------------------------------------------------------------------- never raised
def test_not_raised_while_a_timer_can_wake(loop):
    expect_completes("""
        ev = Event()
        dhaga.spawn_later(0.05, ev.set)
        print(ev.wait())
    """, "True", loop)


def test_not_raised_while_an_asyncio_timer_or_loop_callback_can_wake(loop):
    expect_completes("""
        ev = Event()
        loop = dhaga.get_scheduler().loop
        loop.call_soon(lambda: loop.call_later(0.05, lambda: loop.call_soon(ev.set)))
        print(ev.wait())
    """, "True", loop)


def test_not_raised_while_a_watched_fd_can_wake(loop):
    expect_completes("""
        import dhaga.net
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2); print('hi')"],
                                 stdout=subprocess.PIPE)
        dhaga.net.wait_readable(child.stdout.fileno())
        print(child.stdout.readline().decode().strip())
        child.wait()
    """, "hi", loop)


def test_not_raised_while_to_thread_work_is_pending(loop):
    expect_completes("""
        print(dhaga.run(lambda: dhaga.to_thread(lambda: (time.sleep(0.2), "done")[1])))
    """, "done", loop)


def test_not_raised_after_to_thread_work_while_another_wait_is_live(loop):
    out = expect_deadlock("""
        def main():
            dhaga.to_thread(time.sleep, 0.01)  # its pool thread stays, idle
            Queue().get()
        dhaga.run(main)
    """, loop)
    assert "main-1 waits on <Queue" in out


def test_not_raised_while_another_thread_may_put_into_a_thread_safe_queue(loop):
    expect_completes("""
        q = Queue()
        threading.Thread(target=lambda: (time.sleep(0.2), q.put("from a thread"))).start()
        print(dhaga.run(q.get))
    """, "from a thread", loop)


def test_not_raised_while_another_thread_may_submit(loop):
    expect_completes("""
        ev = Event()
        sched = dhaga.get_scheduler()
        threading.Thread(target=lambda: (time.sleep(0.2), sched.submit(ev.set))).start()
        print(ev.wait())
    """, "True", loop)


def test_not_raised_while_a_signal_handler_may_wake(loop):
    expect_completes("""
        ev = Event()
        loop = dhaga.get_scheduler().loop
        loop.add_signal_handler(signal.SIGUSR1, ev.set)
        subprocess.Popen(["sh", "-c", f"sleep 0.2; kill -USR1 {os.getpid()}"])
        print(ev.wait())
    """, "True", loop)


def test_not_raised_while_an_asyncio_task_is_pending(loop):
    expect_completes("""
        from dhaga._core.deadlock import _wake_source
        loop = dhaga.get_scheduler().loop
        fut = loop.create_future()
        async def waits():
            await fut
        task = loop.create_task(waits())
        loop.run_until_complete(asyncio.sleep(0))  # the task starts, and waits on fut
        sched = dhaga.get_scheduler()
        # On uvloop, as if libuv had seen nothing else: the task alone must say "not yet".
        seen_on_uvloop = (lambda: None) if sched._selector is None else None
        print(_wake_source(sched, seen_on_uvloop))
        task.cancel()
    """, "an asyncio task", loop)


def test_not_raised_while_a_reader_added_to_the_loop_by_other_code_may_wake(loop):
    expect_completes("""
        ev = Event()
        loop = dhaga.get_scheduler().loop
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2); print('hi')"],
                                 stdout=subprocess.PIPE)
        fd = child.stdout.fileno()
        loop.add_reader(fd, ev.set)
        assert ev.wait()
        loop.remove_reader(fd)
        child.wait()
        print(f"fd {fd} is watched" in found)
    """, "True", loop)


def test_not_raised_while_a_server_of_the_loop_itself_may_wake(loop):
    # A server made by the loop (an asyncio protocol, no task, no dhaga): on uvloop a libuv
    # TCP handle, on asyncio a reader callback of the loop's own.
    expected = "a libuv TCP handle is active" if loop == "uvloop" else "fd "
    expect_completes(f"        expected = {expected!r}\n" + """
        ev = Event()
        loop = dhaga.get_scheduler().loop
        class Proto(asyncio.Protocol):
            def data_received(self, data):
                ev.set()
        server = loop.run_until_complete(loop.create_server(Proto, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        subprocess.Popen([sys.executable, "-c", "import socket, time; time.sleep(0.2); "
                          f"socket.create_connection(('127.0.0.1', {port})).sendall(b'x')"])
        assert ev.wait()
        server.close()
        # what made the difference: on uvloop a libuv TCP handle, on asyncio the listening fd
        print(any(w is not None and w.startswith(expected) for w in found))
    """, "True", loop)


def test_not_raised_while_an_unlisted_os_thread_runs(loop):
    expect_completes("""
        import _thread
        q = Queue()
        _thread.start_new_thread(lambda: (time.sleep(0.2), q.put("from a raw thread")), ())
        print(dhaga.run(q.get))
    """, "from a raw thread", loop)


def test_not_raised_while_a_real_thread_is_starting_under_monkey_patching(loop):
    expect_completes("""
        import dhaga.monkey
        dhaga.monkey.patch_all()
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            print(sorted(ex.map(abs, [-1, -2])))
    """, "[1, 2]", loop)


# ---------------------------------------------------------------------------- uvloop's watch
def test_the_uvloop_watch_lets_the_loop_sleep_while_a_timer_is_pending(monkeypatch):
    # Checks back off (1 ms, 2 ms, 4 ms...): a wait of 0.2 s on a timer is a few of them, not
    # one per loop iteration, and the loop sleeps in between.
    pytest.importorskip("uvloop")
    import dhaga
    from dhaga import scheduler
    from dhaga._core import uvwatch

    scheduler.use_loop("uvloop")
    scheduler.reset_scheduler()
    checks = []
    monkeypatch.setattr(uvwatch.IdleWatch, "_check",
                        lambda w, real=uvwatch.IdleWatch._check: checks.append(1) or real(w))
    dhaga.sleep(0.2)
    assert 1 <= len(checks) <= 10
