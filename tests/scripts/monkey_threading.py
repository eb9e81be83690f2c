"""Child script: patch_all() (threading included by default) makes threads, locks, queues and locals dhaga-backed.

Prints one JSON line.
"""

from dhaga import monkey

monkey.patch_all()

import json  # noqa: E402
import queue  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import dhaga  # noqa: E402


def main():
    q = queue.Queue()
    lock = threading.Lock()
    store = threading.local()
    seen = []

    def worker(i):
        store.value = i
        time.sleep(0.05)  # another worker runs meanwhile and sets its own value
        with lock:
            seen.append(store.value == i)
        q.put(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sorted(q.get(timeout=1) for _ in range(100))
    # dhaga's own thread pool stays real: name resolution still works off the loop
    resolved = socket.getaddrinfo("127.0.0.1", 80)[0][4][0]
    # Real threads that ended (a plain ThreadPoolExecutor, dhaga's pool) leave no Dummy-N
    # entries behind in threading.enumerate().
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        names = list(ex.map(lambda _: threading.current_thread().name, range(4)))
    cond = threading.Condition()
    ev = threading.Event()

    def waiter():
        with cond:
            cond.wait_for(ev.is_set, timeout=5)
        return ev.is_set()

    w = dhaga.spawn(waiter)
    dhaga.sleep(0)
    with cond:
        ev.set()
        cond.notify_all()
    print(json.dumps({
        "dummies": [t.name for t in threading.enumerate() if t.name.startswith("Dummy")],
        "pool_names": all(n.startswith("ThreadPoolExecutor") for n in names),
        "condition": w.result(), "cond_class": type(cond).__module__,
        "ok_locals": sum(seen), "got": got == list(range(100)),
        "os_threads": threading.active_count(), "alive": any(t.is_alive() for t in threads),
        "thread_class": threading.Thread.__module__, "resolved": resolved,
        "green_to_thread": dhaga.to_thread(lambda: 6 * 7),
    }))


if __name__ == "__main__":
    main()
