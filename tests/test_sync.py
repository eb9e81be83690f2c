"""dhaga.sync within one thread: stdlib semantics, FIFO service, and nothing lost on kill/timeout."""

from __future__ import annotations

import asyncio
import queue as stdqueue
import random

import pytest

import dhaga
from dhaga import BlockingError, Timeout
from dhaga._core.states import TIMED_OUT
from dhaga.scheduler import get_scheduler
from dhaga.sync import (
    BoundedSemaphore,
    Condition,
    Event,
    LifoQueue,
    Lock,
    PriorityQueue,
    Queue,
    RLock,
    Semaphore,
    ShutDown,
    SimpleQueue,
)
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")


def expire(d: dhaga.Dhaga) -> None:
    """Make a parked dhaga's timeout fire now (what its timer would do)."""
    assert get_scheduler()._unpark(d, TIMED_OUT)


# ---------------------------------------------------------------------- Event
def test_event_wakes_every_waiter_in_wait_order():
    ev, woke = Event(), []
    ds = [dhaga.spawn(lambda i=i: woke.append((i, ev.wait()))) for i in range(5)]
    settle()
    assert woke == [] and not ev.is_set()
    ev.set()
    dhaga.joinall(ds)
    assert woke == [(i, True) for i in range(5)]
    assert ev._waiters == {}


def test_event_wait_timeout_returns_false_and_clear_rearms():
    ev = Event()
    assert ev.wait(0.001) is False
    ev.set()
    assert ev.wait() is True and ev.wait(0) is True
    ev.clear()
    assert not ev.is_set() and ev.wait(0.001) is False
    assert ev._waiters == {}


def test_event_top_level_wait_runs_other_dhagas():
    ev = Event()
    dhaga.spawn(ev.set)
    assert ev.wait(timeout=5) is True


def test_event_killed_waiter_is_unregistered():
    ev = Event()
    d = dhaga.spawn(ev.wait)
    settle()
    d.kill()
    assert d.killed() and ev._waiters == {}


def test_blocking_in_a_coroutine_raises_blocking_error():
    ev, q, lock, full = Event(), Queue(), Lock(), Queue(1)
    lock.acquire()
    full.put(0)

    async def coro():
        for call in (ev.wait, q.get, lock.acquire, lambda: full.put(1)):
            with pytest.raises(BlockingError):
                call()
        return "checked"

    assert dhaga.wait(asyncio.ensure_future(coro(), loop=get_scheduler().loop)) == "checked"
    assert ev._waiters == {} and not q._getters and not lock._waiters
    assert lock.locked() and q._got_reserved == 0  # nothing given away by the refused calls
    assert full._put_reserved == 0 and not full._putters and full.get(timeout=1) == 0
    q.put(1)
    assert q.get(timeout=1) == 1


# ---------------------------------------------------------------------- Lock
def test_lock_basic_stdlib_semantics():
    lock = Lock()
    assert not lock.locked()
    assert lock.acquire() is True and lock.locked()
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0.001) is False
    with pytest.raises(ValueError):
        lock.acquire(False, 1)
    with pytest.raises(ValueError):
        lock.acquire(timeout=-2)
    lock.release()
    with pytest.raises(ValueError):  # as threading.Lock: refused even when the lock is free
        lock.acquire(False, 1)
    assert not lock.locked()
    assert lock.acquire(False) is True and lock.acquire(False) is False
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with lock:
        assert lock.locked()
    assert not lock.locked()


def test_lock_excludes_and_serves_waiters_fifo():
    lock, order, inside = Lock(), [], []

    def worker(i):
        with lock:
            inside.append(i)
            assert len(inside) == 1
            order.append(i)
            dhaga.sleep(0)  # others try to get in meanwhile
            inside.remove(i)

    lock.acquire()
    ds = []
    for i in range(6):
        ds.append(dhaga.spawn(worker, i))
        settle()  # i queues before i+1
    assert len(lock._waiters) == 6
    lock.release()
    dhaga.joinall(ds, raise_error=True)
    assert order == list(range(6))
    assert not lock.locked() and not lock._waiters


def test_lock_killed_waiter_loses_its_place_and_nothing_else():
    lock, got = Lock(), []
    lock.acquire()
    a = dhaga.spawn(lambda: got.append(("a", lock.acquire())))
    settle()
    b = dhaga.spawn(lambda: got.append(("b", lock.acquire())))
    settle()
    a.kill()
    assert len(lock._waiters) == 1
    lock.release()
    b.join()
    assert got == [("b", True)] and lock.locked()


def test_lock_handed_to_a_waiter_that_was_being_killed_goes_to_the_next():
    lock = Lock()
    lock.acquire()
    a = dhaga.spawn(lock.acquire)
    settle()
    b = dhaga.spawn(lock.acquire)
    settle()
    a.kill(block=False)  # a is runnable with Killed; its ticket is still first in line
    lock.release()  # hands the lock to a, which cannot take it: a passes it on
    assert b.result(timeout=5) is True and a.killed()
    assert lock.locked() and not lock._waiters


def test_lock_handed_over_as_the_timeout_fires_counts_as_acquired():
    lock = Lock()
    lock.acquire()
    a = dhaga.spawn(lock.acquire, timeout=60)
    settle()
    expire(a)  # a's timer fired ...
    lock.release()  # ... and the lock is handed to it at the same moment
    assert a.result() is True and lock.locked()


def test_lock_kill_after_handover_keeps_it_until_the_next_block():
    lock, log = Lock(), []

    def holder(name):
        with lock:
            log.append(name)
            dhaga.sleep(60)  # a kill lands here; __exit__ releases

    lock.acquire()
    a = dhaga.spawn(holder, "a")
    settle()
    b = dhaga.spawn(holder, "b")
    settle()
    lock.release()  # a is woken owning the lock
    a.kill()  # delivered at a's next blocking point, inside the block
    settle()
    assert log == ["a", "b"] and a.killed() and lock.locked()
    b.kill()
    assert not lock.locked()


def test_lock_timeout_returns_false_and_unqueues():
    lock = Lock()
    lock.acquire()
    assert dhaga.run(lock.acquire, timeout=0.001) is False
    assert not lock._waiters and lock.locked()


# ---------------------------------------------------------------------- RLock
def test_rlock_is_reentrant_and_owned_per_dhaga():
    rl = RLock()
    assert rl.acquire() and rl.acquire()
    d = dhaga.spawn(rl.acquire, timeout=0.001)
    assert d.result() is False  # another dhaga of the same thread is excluded

    def not_owner():
        with pytest.raises(RuntimeError):
            rl.release()

    dhaga.run(not_owner)
    rl.release()
    assert rl.locked()
    rl.release()
    assert not rl.locked()
    with pytest.raises(RuntimeError):
        rl.release()
    assert dhaga.spawn(rl.acquire).result() is True


# ---------------------------------------------------------------------- Semaphore
def test_semaphore_counts_and_hands_over_fifo():
    sem, order = Semaphore(2), []
    assert sem.acquire() and sem.acquire(blocking=False)
    assert sem.acquire(blocking=False) is False and sem.locked()
    with pytest.raises(ValueError):
        sem.acquire(False, timeout=1)
    ds = []
    for i in range(4):
        ds.append(dhaga.spawn(lambda i=i: (sem.acquire(), order.append(i))))
        settle()
    sem.release(3)
    settle()
    assert order == [0, 1, 2] and sem._value == 0
    sem.release(2)
    settle()
    assert order == [0, 1, 2, 3] and sem._value == 1


def test_semaphore_killed_and_timed_out_waiters_lose_no_permit():
    sem = Semaphore(0)
    a = dhaga.spawn(sem.acquire)
    b = dhaga.spawn(sem.acquire, timeout=60)
    c = dhaga.spawn(sem.acquire)
    settle()
    a.kill(block=False)
    expire(b)
    sem.release(2)  # one permit to a (killed: passed on to c), one to b (timed out: kept)
    assert b.result() is True and c.result() is True and a.killed()
    assert sem._value == 0 and not sem._waiters
    assert sem.acquire(timeout=0.001) is False


def test_bounded_semaphore_refuses_over_release():
    sem = BoundedSemaphore(2)
    with pytest.raises(ValueError):
        sem.release()
    with sem:
        assert sem._value == 1
    assert sem._value == 2


def test_semaphore_stress_with_kills_and_timeouts_conserves_permits():
    rng = random.Random(7)
    sem, inside, peak = Semaphore(3), [0], [0]

    def user():
        for _ in range(20):
            if sem.acquire(timeout=rng.choice([None, 0, 0.0005])):
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
                try:
                    dhaga.sleep(0)
                finally:
                    inside[0] -= 1
                    sem.release()
            else:
                dhaga.sleep(0)

    ds = [dhaga.spawn(user) for _ in range(20)]
    for _ in range(10):
        dhaga.sleep(0)
        rng.choice(ds).kill(block=False)
    dhaga.joinall(ds)
    assert peak[0] <= 3 and inside[0] == 0
    assert sem._value == 3 and not sem._waiters


# ---------------------------------------------------------------------- Condition
def test_condition_notify_wakes_in_wait_order():
    cond, woke = Condition(), []

    def waiter(i):
        with cond:
            assert cond.wait(timeout=10) is True
            woke.append(i)

    ds = []
    for i in range(4):
        ds.append(dhaga.spawn(waiter, i))
        settle()
    with cond:
        cond.notify(2)
    settle()
    assert woke == [0, 1]
    with cond:
        cond.notify_all()
    dhaga.joinall(ds, raise_error=True)
    assert woke == [0, 1, 2, 3]


def test_condition_requires_the_lock_and_times_out():
    cond = Condition(Lock())
    with pytest.raises(RuntimeError):
        cond.wait()
    with pytest.raises(RuntimeError):
        cond.notify()
    with cond:
        assert cond.wait(0.001) is False
        assert cond._lock.locked()  # reacquired
    assert not cond._waiters


def test_condition_notification_for_a_killed_waiter_is_passed_on():
    cond = Condition()
    woke = []

    def waiter(name):
        with cond:
            cond.wait()
            woke.append(name)

    a = dhaga.spawn(waiter, "a")
    settle()
    b = dhaga.spawn(waiter, "b")
    settle()
    a.kill(block=False)
    with cond:
        cond.notify()  # goes to a, which is dying: it hands the notification to b
    b.join(timeout=5)
    assert woke == ["b"] and a.killed()


def test_condition_wait_for_predicate_with_producer():
    cond, items = Condition(), []

    def produce():
        for i in range(3):
            with cond:
                items.append(i)
                cond.notify_all()
            dhaga.sleep(0)

    dhaga.spawn(produce)
    with cond:
        assert cond.wait_for(lambda: len(items) == 3, timeout=10) is True
        assert cond.wait_for(lambda: len(items) > 5, timeout=0.001) is False


# ---------------------------------------------------------------------- Queue
def test_queue_orders_and_nonblocking_errors():
    for cls, expected in ((Queue, [3, 1, 2]), (LifoQueue, [2, 1, 3]), (PriorityQueue, [1, 2, 3])):
        q = cls(maxsize=3)
        for x in (3, 1, 2):
            q.put(x)
        assert q.full() and q.qsize() == 3
        with pytest.raises(stdqueue.Full):
            q.put_nowait(4)
        with pytest.raises(stdqueue.Full):
            q.put(4, timeout=0.001)
        assert [q.get() for _ in range(3)] == expected
        assert q.empty()
        with pytest.raises(stdqueue.Empty):
            q.get_nowait()
        with pytest.raises(stdqueue.Empty):
            q.get(timeout=0.001)
        with pytest.raises(ValueError):
            q.get(timeout=-1)
    sq = SimpleQueue()
    sq.put(1)
    assert sq.get() == 1 and sq.empty()


def test_queue_getters_served_fifo_and_reserved_items_are_theirs():
    q, got = Queue(), []
    ds = []
    for i in range(3):
        ds.append(dhaga.spawn(lambda i=i: got.append((i, q.get()))))
        settle()
    q.put("a")
    q.put("b")
    with pytest.raises(stdqueue.Empty):
        q.get_nowait()  # both items are reserved for woken getters
    q.put("c")
    dhaga.joinall(ds)
    assert got == [(0, "a"), (1, "b"), (2, "c")]


def test_queue_putters_served_fifo_when_full():
    q = Queue(maxsize=1)
    q.put("first")
    ds = []
    for i in range(3):
        ds.append(dhaga.spawn(q.put, f"p{i}"))
        settle()
    assert [q.get() for _ in range(4)] == ["first", "p0", "p1", "p2"]
    dhaga.joinall(ds, raise_error=True)


def test_queue_killed_getter_passes_its_item_on():
    q = Queue()
    a = dhaga.spawn(q.get)
    b = dhaga.spawn(q.get)
    settle()
    a.kill(block=False)
    q.put("item")  # reserved for a, which is dying: b gets it
    assert b.result(timeout=5) == "item" and a.killed()
    assert q.empty() and q._got_reserved == 0


def test_queue_getter_timed_out_as_item_arrives_takes_it():
    q = Queue()
    a = dhaga.spawn(q.get, timeout=60)
    settle()
    expire(a)
    q.put("item")
    assert a.result() == "item" and q._got_reserved == 0


def test_queue_killed_putter_passes_its_slot_on():
    q = Queue(maxsize=1)
    q.put("x")
    a = dhaga.spawn(q.put, "from a")
    b = dhaga.spawn(q.put, "from b")
    settle()
    a.kill(block=False)
    assert q.get() == "x"  # the slot is reserved for a, which passes it to b
    b.join(timeout=5)
    assert q.get_nowait() == "from b" and q.empty() and q._put_reserved == 0


def test_queue_timeouts_while_waiting_leave_no_ticket():
    q = Queue(maxsize=1)
    with pytest.raises(stdqueue.Empty):
        q.get(timeout=0.001)
    q.put(1)
    with pytest.raises(stdqueue.Full):
        q.put(2, timeout=0.001)
    assert not q._getters and not q._putters and q.get() == 1


def test_queue_task_done_and_join():
    q = Queue()
    done = []

    def worker():
        while True:
            item = q.get()
            dhaga.sleep(0)
            done.append(item)
            q.task_done()

    w = dhaga.spawn(worker)
    for i in range(5):
        q.put(i)
    q.join(timeout=5)
    assert done == list(range(5)) and q.unfinished_tasks == 0
    w.kill()
    q.put("late")
    with pytest.raises(Timeout):
        q.join(timeout=0.001)
    q.get()
    q.task_done()
    q.join()
    with pytest.raises(ValueError):
        q.task_done()


def test_queue_shutdown_wakes_getters_and_refuses_puts():
    q = Queue()
    g = dhaga.spawn(q.get)
    settle()
    q.shutdown()
    with pytest.raises(ShutDown):
        g.result()
    with pytest.raises(ShutDown):
        q.put(1)
    q2 = Queue()
    q2.put(1)
    q2.put(2)
    q2.shutdown()
    assert q2.get() == 1  # items put before shutdown are still delivered
    q2.task_done()
    q2.shutdown(immediate=True)
    with pytest.raises(ShutDown):
        q2.get()
    q2.join(timeout=1)  # dropped items count as done


def test_queue_top_level_blocking_drives_the_loop():
    q = Queue(maxsize=1)
    dhaga.spawn(lambda: [q.put(i) for i in range(10)])
    assert [q.get(timeout=5) for _ in range(10)] == list(range(10))


def test_queue_kill_after_wake_keeps_the_item_in_the_dhaga():
    q, got = Queue(), []

    def consumer():
        got.append(q.get())
        dhaga.sleep(60)

    d = dhaga.spawn(consumer)
    settle()
    q.put("item")
    d.kill()
    assert got == ["item"] and q.empty()


def test_queue_stress_with_kills_and_timeouts_loses_and_duplicates_nothing():
    rng = random.Random(11)
    q: Queue[int] = Queue(maxsize=4)
    received: list[int] = []
    put_ok: list[int] = []

    def producer(base):
        for i in range(30):
            try:
                q.put(base + i, timeout=rng.choice([None, 0.0005]))
                put_ok.append(base + i)
            except stdqueue.Full:
                pass

    def consumer():
        while True:
            try:
                received.append(q.get(timeout=rng.choice([None, 0.0005])))
            except stdqueue.Empty:
                pass

    producers = [dhaga.spawn(producer, 1000 * k) for k in range(4)]
    consumers = [dhaga.spawn(consumer) for _ in range(6)]
    for _ in range(20):
        dhaga.sleep(0)
        rng.choice(consumers).kill(block=False)
        consumers.append(dhaga.spawn(consumer))
    dhaga.joinall(producers)
    while not q.empty() or q._got_reserved:
        dhaga.sleep(0)
    for c in consumers:
        c.kill()
    # A put that raised Killed in producer never happens: producers are never killed here.
    assert sorted(received) == sorted(put_ok)
    assert q._got_reserved == 0 and q._put_reserved == 0 and not q._getters


def test_queue_put_hands_item_straight_to_a_waiting_getter_of_this_thread():
    q = Queue()
    g = dhaga.spawn(q.get)
    settle()
    q.put("handed")  # delivered to g at once: it never sits in the storage
    with q.mutex:  # what queue.Queue users do to drop everything: nothing to drop now
        assert len(q.queue) == 0
        q.queue.clear()
    assert g.result(timeout=5) == "handed" and q._got_reserved == 0 and q.empty()


class _CountingQueue(Queue):
    """Storage of its own, as `queue.Queue` subclasses may have: the generic paths serve it.

    It keeps the items it handed out, so ``len(self.queue)`` is not its size: only `_qsize` is.
    """

    def _init(self, maxsize):
        self.queue = {}
        self.first = self.next = 0

    def _qsize(self):
        return self.next - self.first

    def _put(self, item):
        self.queue[self.next] = item
        self.next += 1

    def _get(self):
        item = self.queue[self.first]
        self.first += 1
        return item


@pytest.mark.parametrize("maxsize", [0, 2])
def test_queue_subclass_with_its_own_storage(maxsize):
    q = _CountingQueue(maxsize)
    assert not q._plain and Queue._plain
    got = []

    def consumer():
        for _ in range(50):
            got.append(q.get(timeout=5))

    c = dhaga.spawn(consumer)
    settle()  # the consumer waits: the first item is handed over, the rest queue up
    for i in range(50):
        q.put(i, timeout=5)
    c.join(timeout=5)
    assert got == list(range(50)) and q.empty() and q._qsize() == 0 < len(q.queue)
    assert q._got_reserved == 0 and q._put_reserved == 0


def test_lock_exit_is_release_and_takes_exception_info():
    lock = Lock()
    lock.acquire()
    lock.__exit__(ValueError, ValueError("x"), None)  # what `with` passes when its body raised
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.__exit__(None, None, None)
