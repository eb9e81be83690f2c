"""Instructions per operation, counted by valgrind's callgrind: dhaga against gevent, and floors.

``python benchmarks/bench_instructions.py [--workloads pingpong,lock,queue,floors]``

Timings on a shared 2-core machine move by 20-30% between runs; instruction counts do not (the
same binary and inputs give the same count, whatever else runs). The children run with a fixed
``PYTHONHASHSEED``: string hashes decide dict layouts, which moved counts by a few per cent. Each workload runs twice under
``valgrind --tool=callgrind``, with N and 3N iterations, and the difference divided by 2N is the
cost of one iteration, start-up excluded. Needs valgrind (Debian: ``apt-get install valgrind``).

Workloads (the same as bench_core.py and bench_sync.py):
    pingpong  a round trip between two dhagas through two unbounded queues
    lock      one acquire/release of a lock contended by 100 dhagas, sleep(0) inside
    queue     one put and one get of an unbounded queue, producer then consumer
Floors (what no complete implementation can go under; see docs/benchmarks.md):
    floor-empty-queue  put and get as empty Python methods, called from a loop
    floor-mini-queue   ping-pong through a queue with no thread safety, timeouts or kill
                       safety, parking and waking on dhaga's scheduler
    floor-mini-lock    the lock workload with such a minimal lock
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

N = 2000


# ---------------------------------------------------------------------------- child side
def _pingpong(spawn, joinall, a, b, n: int) -> None:
    def pinger():
        for i in range(n):
            a.put(i)
            b.get()

    def ponger():
        for _ in range(n):
            b.put(a.get())

    joinall([spawn(pinger), spawn(ponger)])


def _contend(spawn, joinall, sleep, lock, n: int) -> None:
    def worker():
        for _ in range(n // 100):
            with lock:
                sleep(0)

    joinall([spawn(worker) for _ in range(100)])


def _produce_consume(spawn, joinall, q, n: int) -> None:
    def producer():
        for i in range(n):
            q.put(i)

    def consumer():
        for _ in range(n):
            q.get()

    joinall([spawn(producer), spawn(consumer)])


def _dhaga(workload: str, n: int) -> None:
    import dhaga
    from dhaga.sync import Lock, Queue

    dhaga.run(lambda: None)
    spawn, joinall = dhaga.spawn, dhaga.joinall
    if workload in ("pingpong", "floor-mini-queue"):
        make = Queue if workload == "pingpong" else _mini_queue
        dhaga.run(_pingpong, spawn, joinall, make(), make(), n)
    elif workload in ("lock", "floor-mini-lock"):
        lock = Lock() if workload == "lock" else _mini_lock()
        dhaga.run(_contend, spawn, joinall, dhaga.sleep, lock, n)
    elif workload == "queue":
        dhaga.run(_produce_consume, spawn, joinall, Queue(), n)
    elif workload == "floor-empty-queue":
        class Empty:
            def put(self, item):
                pass

            def get(self):
                pass

        q = Empty()
        put, get = q.put, q.get
        for i in range(n):
            put(i)
        for _ in range(n):
            get()
    else:
        raise SystemExit(f"unknown workload {workload}")


def _mini_queue():
    """A queue for one thread, without timeouts, kills, shutdown or task counting."""
    from collections import deque

    from dhaga._core.states import PARKED, RUNNING
    from dhaga._core.threads import _local

    class MiniQueue:
        def __init__(self):
            self.items, self.getters = deque(), deque()

        def put(self, item):
            if self.getters:
                w = self.getters.popleft()
                w._state, w._resume_value = RUNNING, item
                w._sched._runq.append(w)
                return
            self.items.append(item)

        def get(self):
            if self.items:
                return self.items.popleft()
            sched = _local.sched
            w = sched._current
            self.getters.append(w)
            w._state = PARKED
            sched._switch_next()
            value, w._resume_value = w._resume_value, None
            return value

    return MiniQueue()


def _mini_lock():
    """A lock for one thread, without timeouts, kills or FIFO hand-over guarantees."""
    from collections import deque

    from dhaga._core.states import PARKED, RUNNING
    from dhaga._core.threads import _local

    class MiniLock:
        def __init__(self):
            self.held, self.waiters = False, deque()

        def __enter__(self):
            if not self.held:
                self.held = True
                return True
            sched = _local.sched
            w = sched._current
            self.waiters.append(w)
            w._state = PARKED
            sched._switch_next()
            return True

        def __exit__(self, *exc):
            if self.waiters:  # hand it over: it stays held
                w = self.waiters.popleft()
                w._state = RUNNING
                w._sched._runq.append(w)
            else:
                self.held = False

    return MiniLock()


def _gevent(workload: str, n: int) -> None:
    import gevent
    import gevent.thread
    from gevent.queue import Queue

    gevent.sleep(0)
    spawn, joinall = gevent.spawn, gevent.joinall
    if workload == "pingpong":
        _pingpong(spawn, joinall, Queue(), Queue(), n)
    elif workload == "lock":
        _contend(spawn, joinall, gevent.sleep, gevent.thread.LockType(), n)
    elif workload == "queue":
        _produce_consume(spawn, joinall, Queue(), n)
    else:
        raise SystemExit(f"unknown workload {workload}")


# ---------------------------------------------------------------------------- parent side
def count(peer: str, workload: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         os.path.abspath(__file__), "--child", peer, workload, str(n)],
        capture_output=True, text=True, check=True, timeout=900,
        env=dict(os.environ, PYTHONHASHSEED="0"),  # str hashes move dict layouts, and counts
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", out.stderr)
    if not found:
        raise RuntimeError(f"no instruction count from callgrind:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_iteration(peer: str, workload: str) -> float:
    return (count(peer, workload, 3 * N) - count(peer, workload, N)) / (2 * N)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workloads", default="pingpong,lock,queue,floors")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        peer, workload, n = args.child
        (_dhaga if peer == "dhaga" else _gevent)(workload, int(n))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    print("| workload | dhaga | gevent | gevent / dhaga |")
    print("|---|---|---|---|")
    for workload in args.workloads.split(","):
        if workload == "floors":
            for floor in ("floor-empty-queue", "floor-mini-queue", "floor-mini-lock"):
                print(f"| {floor} | {per_iteration('dhaga', floor):,.0f} | | |", flush=True)
            continue
        mine, theirs = per_iteration("dhaga", workload), per_iteration("gevent", workload)
        print(f"| {workload} | {mine:,.0f} | {theirs:,.0f} | {theirs / mine:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
