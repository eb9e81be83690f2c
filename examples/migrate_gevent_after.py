"""AFTER: examples/migrate_gevent_before.py moved to dhaga (docs/migrating-from-gevent.md).

Line for line the same program; it prints exactly what the gevent version prints (a test
runs both and compares). Run: python examples/migrate_gevent_after.py
"""

from dhaga import monkey

monkey.patch_all()  # before anything imports socket or time; threads stay real threads

import socket  # noqa: E402 - patched above
import time  # noqa: E402

import dhaga  # noqa: E402
from dhaga.net import StreamServer  # noqa: E402
from dhaga.pool import Pool  # noqa: E402
from dhaga.sync import BoundedSemaphore, Event, Queue  # noqa: E402


def square(i):
    dhaga.sleep(0.01 * (5 - i))  # later ones finish first
    return i * i


jobs = [dhaga.spawn(square, i) for i in range(5)]
dhaga.joinall(jobs, timeout=5)
print("joinall:", [job.result() for job in jobs])  # .value -> .result()

pool = Pool(2)  # at most two at once
print("pool.map:", pool.map(square, range(5)))
print("imap_unordered:", sorted(pool.imap_unordered(square, range(5))))

try:
    with dhaga.timeout(0.05):  # gevent.Timeout(...) -> dhaga.timeout(...)
        dhaga.sleep(10)
except dhaga.Timeout:
    print("timeout: the block expired")

q, done = Queue(), Event()


def producer():
    for i in range(3):
        q.put(i)
    q.put(None)


def consumer():
    got = []
    while (item := q.get()) is not None:
        got.append(item)
    print("queue:", got)
    done.set()


dhaga.spawn(consumer)
dhaga.spawn(producer)
print("event set:", done.wait(5))

lock, total = BoundedSemaphore(1), [0]


def add():
    with lock:
        value = total[0]
        dhaga.sleep(0)  # another dhaga runs here: without the lock an update is lost
        total[0] = value + 1


dhaga.joinall([dhaga.spawn(add) for _ in range(10)])
print("locked total:", total[0])


def worker():
    try:
        dhaga.sleep(10)
    finally:
        print("worker: cleaning up")


w = dhaga.spawn(worker)
dhaga.sleep(0)  # let it start and block
w.kill()  # raises dhaga.Killed inside it; waits until it is done
print("worker dead:", w.done())  # .dead -> .done()


def echo(sock, address):
    with sock:
        sock.sendall(sock.recv(100).upper())


server = StreamServer(("127.0.0.1", 0), echo)
server.start()
with socket.create_connection(("127.0.0.1", server.address[1])) as conn:  # .server_port -> .address
    conn.sendall(b"hello")
    print("echo:", conn.recv(100).decode())
server.stop()

started = time.monotonic()
dhaga.joinall([dhaga.spawn(time.sleep, 0.2) for _ in range(10)])  # patched time.sleep
print("ten 0.2 s sleeps overlapped:", time.monotonic() - started < 1.0)
