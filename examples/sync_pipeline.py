"""A producer/consumer pipeline with dhaga.sync: bounded Queue, task_done/join, Lock, Event.

Three producers feed a bounded queue (they wait while it is full), four workers process the
items, ``queue.join()`` waits until every item is done, and an Event tells the workers to stop.
Exactly the code you would write with `threading` and `queue`, running in one OS thread.
"""

import queue

import dhaga
from dhaga.sync import Event, Lock, Queue

work: Queue[int] = Queue(maxsize=5)
stop = Event()
stats_lock = Lock()
stats = {"processed": 0, "total": 0}


def producer(base: int) -> None:
    for i in range(20):
        work.put(base + i)  # waits while the queue is full


def worker(name: str) -> None:
    while not stop.is_set():
        try:
            item = work.get(timeout=0.05)
        except queue.Empty:  # the standard library's exception
            continue
        dhaga.sleep(0.001)  # stands for real work that waits on I/O
        with stats_lock:
            stats["processed"] += 1
            stats["total"] += item
        work.task_done()


def main() -> None:
    workers = [dhaga.spawn(worker, f"w{i}") for i in range(4)]
    producers = [dhaga.spawn(producer, 1000 * k) for k in range(3)]
    dhaga.joinall(producers)
    work.join()  # every item put has been processed
    stop.set()
    dhaga.joinall(workers)
    expected = sum(1000 * k + i for k in range(3) for i in range(20))
    print(f"processed {stats['processed']} items, total {stats['total']} "
          f"(expected {expected})")
    print(f"queue empty: {work.empty()}, unfinished: {work.unfinished_tasks}")


if __name__ == "__main__":
    dhaga.run(main)
