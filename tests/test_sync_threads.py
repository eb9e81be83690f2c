"""dhaga.sync across OS threads: 8 threads running their own dhagas, and plain threads blocking."""

from __future__ import annotations

import queue as stdqueue
import random
import threading
import time
from collections import Counter
from typing import Callable

import pytest

import dhaga
from dhaga.sync import Condition, Event, Lock, Queue, RLock, Semaphore

pytestmark = pytest.mark.usefixtures("each_loop")

N_THREADS = 8
DEADLINE = 20.0


def run_threads(targets: list[Callable[[], object]]) -> list[object]:
    """Run each target in its own OS thread; return their results, re-raising any failure."""
    results: list[object] = [None] * len(targets)
    errors: list[BaseException] = []

    def main(i: int) -> None:
        try:
            results[i] = targets[i]()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=main, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    # The top level of this thread may own dhagas too: block green while the others run.
    end = time.monotonic() + DEADLINE
    for t in threads:
        while t.is_alive() and time.monotonic() < end:
            dhaga.sleep(0.002)
    alive = [t for t in threads if t.is_alive()]
    assert not alive, f"{len(alive)} threads still running after {DEADLINE}s"
    if errors:
        raise errors[0]
    return results


def in_dhagas(*fns: Callable[[], object]) -> Callable[[], list[object]]:
    """A thread body: run each fn in its own dhaga on that thread's scheduler, return results."""

    def body() -> list[object]:
        def main() -> list[object]:
            ds = [dhaga.spawn(fn) for fn in fns]
            return [d.result() for d in ds]

        return dhaga.run(main)

    return body


def wait_until(predicate: Callable[[], bool]) -> None:
    """Block green until ``predicate()`` holds: the cross-thread cousin of ``settle()``."""
    end = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        dhaga.sleep(0.001)


def test_queue_between_eight_dhaga_threads_and_plain_threads():
    q: Queue[object] = Queue(maxsize=8)
    producers_done: Queue[int] = Queue()
    per_producer = 100

    def producer(tag: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(per_producer):
                q.put((tag, i))
            producers_done.put(tag)
        return run

    received: Counter = Counter()
    guard = threading.Lock()

    def consumer() -> None:
        while (item := q.get(timeout=DEADLINE)) is not None:
            with guard:
                received[item] += 1

    def plain_producer(tag: int) -> Callable[[], None]:
        return producer(tag)  # blocking put at the top level of a plain thread

    targets: list[Callable[[], object]] = [
        in_dhagas(producer(2 * t), producer(2 * t + 1), consumer, consumer)
        for t in range(N_THREADS)
    ]
    targets += [consumer, consumer, plain_producer(100), plain_producer(101)]
    n_producers, n_consumers = 2 * N_THREADS + 2, 2 * N_THREADS + 2

    def coordinator() -> None:
        for _ in range(n_producers):
            producers_done.get(timeout=DEADLINE)
        for _ in range(n_consumers):
            q.put(None, timeout=DEADLINE)

    run_threads([*targets, coordinator])
    expected = Counter((tag, i) for tag in [*range(2 * N_THREADS), 100, 101]
                       for i in range(per_producer))
    assert received == expected  # every item exactly once
    assert q.empty() and not q._getters and not q._putters
    assert q._got_reserved == 0 and q._put_reserved == 0


def test_lock_excludes_across_threads_and_dhagas():
    lock = Lock()
    inside, count = [0], [0]
    rounds = 40

    def critical() -> None:
        for _ in range(rounds):
            with lock:
                inside[0] += 1
                assert inside[0] == 1, "two holders at once"
                dhaga.sleep(0)  # let this thread's other dhagas contend
                count[0] += 1
                inside[0] -= 1

    targets = [in_dhagas(critical, critical, critical) for _ in range(N_THREADS)]
    targets += [critical, critical]  # plain threads, blocking at top level
    run_threads(targets)
    assert count[0] == rounds * (3 * N_THREADS + 2)
    assert not lock.locked() and not lock._waiters


def test_rlock_and_condition_across_threads():
    cond = Condition(RLock())
    items: list[int] = []
    taken: list[int] = []

    def consumer() -> None:
        for _ in range(10):
            with cond:
                cond.wait_for(lambda: items, timeout=DEADLINE)
                taken.append(items.pop())

    def producer() -> None:
        for i in range(10 * N_THREADS):
            with cond:
                with cond:  # reentrant
                    items.append(i)
                    cond.notify()
            if i % 8 == 0:
                dhaga.sleep(0)

    run_threads([in_dhagas(consumer) for _ in range(N_THREADS)] + [producer])
    assert sorted(taken) == list(range(10 * N_THREADS)) and not items


def test_semaphore_bounds_across_threads_with_timeouts_and_kills():
    sem = Semaphore(3)
    guard = threading.Lock()
    inside, peak, entered = [0], [0], [0]

    def user(seed: int) -> Callable[[], None]:
        rng = random.Random(seed)

        def run() -> None:
            for _ in range(30):
                if not sem.acquire(timeout=rng.choice([None, 0.0002, 0.001])):
                    continue
                try:
                    with guard:
                        inside[0] += 1
                        entered[0] += 1
                        peak[0] = max(peak[0], inside[0])
                    dhaga.sleep(0)
                    with guard:
                        inside[0] -= 1
                finally:
                    sem.release()

        return run

    def killer_thread(seed: int) -> Callable[[], None]:
        def body() -> None:
            def main() -> None:
                victims = [dhaga.spawn(sem.acquire) for _ in range(5)]
                for v in victims:
                    dhaga.sleep(0.0005)
                    v.kill()  # killed while queued, or just after a hand-over
                    if v.done() and v._exc is None:
                        sem.release()  # it did acquire before the kill landed
                for d in [dhaga.spawn(user(seed)), dhaga.spawn(user(seed + 1))]:
                    d.result()
            dhaga.run(main)
        return body

    targets = [killer_thread(10 * t) for t in range(N_THREADS)] + [user(1), user(2)]
    run_threads(targets)
    assert peak[0] <= 3 and inside[0] == 0 and entered[0] > 0
    assert sem._value == 3 and not sem._waiters  # no permit leaked or lost


def test_event_set_from_plain_thread_wakes_dhagas_on_eight_threads():
    ev = Event()
    n_waiters = 4 * N_THREADS + 2

    def waiter() -> bool:
        return ev.wait(timeout=DEADLINE)

    def setter() -> None:
        wait_until(lambda: len(ev._waiters) == n_waiters)  # everyone is parked
        threading.Thread(target=ev.set).start()  # a thread that runs no dhaga at all

    targets = [in_dhagas(waiter, waiter, waiter, waiter) for _ in range(N_THREADS)]
    results = run_threads([*targets, waiter, waiter, setter])
    flat = [x for r in results if r is not None for x in (r if isinstance(r, list) else [r])]
    assert flat == [True] * n_waiters and ev._waiters == {}


def test_event_set_by_a_dhaga_wakes_plain_threads():
    ev = Event()
    started = threading.Barrier(5)

    def plain() -> bool:
        started.wait(timeout=DEADLINE)
        return ev.wait(timeout=DEADLINE)

    threads_done: list[bool] = []

    def run_plain() -> None:
        threads_done.append(plain())

    ts = [threading.Thread(target=run_plain) for _ in range(4)]
    for t in ts:
        t.start()
    started.wait(timeout=DEADLINE)
    wait_until(lambda: len(ev._waiters) == 4)
    dhaga.spawn(ev.set).join()
    for t in ts:
        t.join(timeout=DEADLINE)
    assert threads_done == [True] * 4


def test_queue_join_and_task_done_across_threads():
    q: Queue[int] = Queue()

    def worker() -> None:
        while True:
            try:
                q.get(timeout=0.2)
            except stdqueue.Empty:
                return
            dhaga.sleep(0)
            q.task_done()

    ts = [threading.Thread(target=in_dhagas(worker, worker)) for _ in range(N_THREADS)]
    for i in range(400):
        q.put(i)
    for t in ts:
        t.start()
    q.join(timeout=DEADLINE)
    assert q.unfinished_tasks == 0
    for t in ts:
        t.join(timeout=DEADLINE)
    assert not any(t.is_alive() for t in ts)


def test_unbounded_queue_fast_path_across_threads_loses_nothing_and_counts_every_task():
    # Unbounded: puts and gets take the fast path (no mutex) whenever nobody waits, from every
    # thread at once; consumers keep queueing up as it runs dry, so the fast path is switched
    # off and on again all the time. Nothing may be lost or doubled, each producer's items
    # arrive in order, and every task is counted for join().
    q: Queue[object] = Queue()
    per_producer = 3000
    n_producers = 6
    seen: list[list] = []

    def producer(tag: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(per_producer):
                q.put((tag, i))
                if i % 97 == 0:
                    dhaga.sleep(0)
        return run

    def consumer() -> None:
        got: list = []
        seen.append(got)
        while (item := q.get(timeout=DEADLINE)) is not None:
            got.append(item)
            q.task_done()
        q.task_done()

    targets: list[Callable[[], object]] = [
        in_dhagas(producer(2 * t), producer(2 * t + 1), consumer) for t in range(2)
    ]
    targets += [producer(4), producer(5), consumer, consumer]
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    wait_until(lambda: q.unfinished_tasks == 0 and sum(map(len, seen)) == n_producers
               * per_producer)
    q.join(timeout=DEADLINE)  # every task counted and done
    for _ in range(4):
        q.put(None)
    for t in threads:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads)
    items = [item for got in seen for item in got]
    assert Counter(items) == Counter((tag, i) for tag in range(n_producers)
                                     for i in range(per_producer))
    for got in seen:  # each consumer sees each producer's items in the order they were put
        for tag in range(n_producers):
            mine = [i for t, i in got if t == tag]
            assert mine == sorted(mine)
    q.join(timeout=DEADLINE)
    assert q.unfinished_tasks == 0
    assert not q._getters and q._got_reserved == 0 and q._fast
