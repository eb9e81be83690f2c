"""dhaga.sync between OS threads: legacy threads and dhagas share one Queue and one Event.

A plain OS thread (legacy code that knows nothing of dhagas) puts readings into a dhaga
Queue with ordinary blocking calls; dhagas in the main thread consume them. When they are
done, a dhaga sets an Event that the plain thread is blocked on. Each side parks its own way;
wake-ups cross threads through the event loop's thread-safe callback.
"""

import threading

import dhaga
from dhaga.sync import Event, Queue

readings: Queue[int | None] = Queue(maxsize=3)
all_consumed = Event()


def legacy_sensor_thread() -> None:
    for i in range(12):
        readings.put(i * i)  # blocks this OS thread while the queue is full
    for _ in range(2):
        readings.put(None)
    ok = all_consumed.wait(timeout=10)  # woken by a dhaga in another thread
    print(f"sensor thread: consumers finished: {ok}")


def consumer(name: str, seen: list[int]) -> None:
    while (value := readings.get()) is not None:
        seen.append(value)


def main() -> None:
    t = threading.Thread(target=legacy_sensor_thread)
    t.start()
    seen: list[int] = []
    dhaga.joinall([dhaga.spawn(consumer, "a", seen), dhaga.spawn(consumer, "b", seen)])
    print(f"dhagas consumed {len(seen)} readings, sum {sum(seen)}")
    all_consumed.set()
    while t.is_alive():  # join green: keep this thread's loop running meanwhile
        dhaga.sleep(0.01)


if __name__ == "__main__":
    dhaga.run(main)
