"""A deadlock reported: a queue's join() that can never return raises dhaga.Deadlock.

The worker forgets ``task_done()``, so ``q.join()`` waits for ever. Without timers, sockets,
thread work or other threads that could still end the wait, dhaga says so instead of hanging,
and names every waiting dhaga, what it waits on, and where.

    python examples/deadlock_report.py            # asyncio's loop
    python examples/deadlock_report.py uvloop     # the same on uvloop
"""

import sys

import dhaga
from dhaga.sync import Queue

if sys.argv[1:] == ["uvloop"]:
    dhaga.use_loop("uvloop")

q = Queue()


def worker():
    while True:
        job = q.get()
        print(f"worker: did {job}")  # ...and forgot q.task_done()


def main():
    dhaga.spawn(worker)
    for job in ("a", "b"):
        q.put(job)
    q.join()


try:
    dhaga.run(main)
except dhaga.Deadlock as e:
    print(f"Deadlock: {e}")
