"""dhaga.dump(): every live dhaga on every thread, what it waits on, for how long, its stack."""

from __future__ import annotations

import io
import os
import signal
import threading

import dhaga
import dhaga.net
from dhaga.monitor import dump_data, dump_on_signal
from dhaga.sync import Event, Lock, Queue
from dhaga.testing import settle


def test_dump_names_each_wait_with_a_readable_repr_and_the_line_that_waits():
    q, ev, lock = Queue(), Event(), Lock()
    a, b = dhaga.net.socketpair()

    def waits_on_queue():
        q.get()

    def waits_on_event():
        ev.wait()

    def waits_on_lock():
        lock.acquire()

    def waits_on_socket():
        a.recv(1)

    def sleeps():
        dhaga.sleep(30)

    lock.acquire()
    ds = [dhaga.spawn(f) for f in (waits_on_queue, waits_on_event, waits_on_lock,
                                     waits_on_socket, sleeps)]
    joiner = dhaga.spawn(ds[0].join)
    settle()
    text = dhaga.dump()
    assert f".waits_on_queue-{ds[0]._id} [parked]" in text
    assert "waits on <Queue size=0 maxsize=0> for " in text
    assert "waits on <Event unset waiters=1>" in text
    assert "waits on <Lock locked waiters=1>" in text
    assert f"waits on fd {a.fileno()} (read)" in text
    assert "waits on sleep()" in text
    assert f"waits_on_queue-{ds[0]._id} parked>" in text and "waits on <Dhaga " in text
    assert "in waits_on_socket" in text and "a.recv(1)" in text  # its stack, innermost last
    assert "test_monitor_dump.py" in text
    data = {d["id"]: d for d in dump_data()}
    entry = data[ds[2]._id]
    assert entry["name"].endswith(f"waits_on_lock-{ds[2]._id}")
    assert entry["state"] == "parked" and entry["waits_on"].startswith("<Lock")
    assert entry["waiting"] >= 0 and entry["stack"][-1]["function"]
    for d in [*ds, joiner]:
        d.kill()
    lock.release()
    a.close()
    b.close()


def test_dump_shows_the_running_dhaga_and_new_ones():
    seen = []

    def reporter():
        later = dhaga.spawn(int)
        seen.append((dhaga.dump(), later))

    dhaga.run(reporter)
    text, later = seen[0]
    assert "[running]" in text and "in reporter" in text
    assert f"--- int-{later._id} [new]" in text


def test_dump_covers_every_threads_scheduler_and_writes_to_a_file():
    ready, release = threading.Event(), threading.Event()

    def in_pool():
        ready.set()
        release.wait(10)

    def other_thread():
        q = Queue()
        d = dhaga.spawn(q.get)
        dhaga.sleep(0)
        dhaga.to_thread(in_pool)  # the top level of this thread parks here
        d.kill()

    t = threading.Thread(target=other_thread, name="far-thread")
    t.start()
    assert ready.wait(10)
    for _ in range(1000):  # the top level parks right after handing in_pool over
        text = dhaga.dump()
        if "to_thread(" in text:
            break
        threading.Event().wait(0.005)
    out = io.StringIO()
    text = dhaga.dump(out)
    release.set()
    t.join(10)
    assert out.getvalue() == text
    assert "(far-thread)" in text and "waits on <Queue size=0" in text
    assert "<top level> [parked] thread" in text
    assert "in_pool)" in text


def test_dump_on_signal_writes_the_dump(tmp_path):
    path = tmp_path / "dump.txt"
    old = signal.getsignal(signal.SIGUSR1)
    with open(path, "w") as f:
        dump_on_signal(signal.SIGUSR1, f)
        try:
            d = dhaga.spawn(Event().wait)
            settle()
            os.kill(os.getpid(), signal.SIGUSR1)
            dhaga.sleep(0)  # the handler runs between bytecodes of this thread
        finally:
            signal.signal(signal.SIGUSR1, old)
        d.kill()
    text = path.read_text()
    assert f"Event.wait-{d._id} [parked]" in text


def test_a_broken_repr_does_not_break_the_dump():
    class Bad:
        def __repr__(self):
            raise ValueError("nope")

    from dhaga._core.parking import park, ticket

    d = dhaga.spawn(lambda: park(ticket(), on=Bad()))
    settle()
    assert "repr failed" in dhaga.dump()
    d.kill()
