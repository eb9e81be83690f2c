"""BEFORE: a small gevent program (docs/migrating-from-gevent.md); its dhaga twin prints the same.

Spawn and joinall, a bounded pool, a timeout, a queue with an event, a lock, a kill, a
stream server with a client, and monkey-patched stdlib code. Run: python examples/migrate_gevent_before.py
"""

from gevent import monkey

monkey.patch_all(thread=False)  # before anything imports socket or time (gevent's default patches threads too)

import socket  # noqa: E402 - patched above
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.lock import BoundedSemaphore  # noqa: E402
from gevent.pool import Pool  # noqa: E402
from gevent.queue import Queue  # noqa: E402
from gevent.server import StreamServer  # noqa: E402


def square(i):
    gevent.sleep(0.01 * (5 - i))  # later ones finish first
    return i * i


jobs = [gevent.spawn(square, i) for i in range(5)]
gevent.joinall(jobs, timeout=5)
print("joinall:", [job.value for job in jobs])

pool = Pool(2)  # at most two at once
print("pool.map:", pool.map(square, range(5)))
print("imap_unordered:", sorted(pool.imap_unordered(square, range(5))))

try:
    with gevent.Timeout(0.05):
        gevent.sleep(10)
except gevent.Timeout:
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


gevent.spawn(consumer)
gevent.spawn(producer)
print("event set:", done.wait(5))

lock, total = BoundedSemaphore(1), [0]


def add():
    with lock:
        value = total[0]
        gevent.sleep(0)  # another greenlet runs here: without the lock an update is lost
        total[0] = value + 1


gevent.joinall([gevent.spawn(add) for _ in range(10)])
print("locked total:", total[0])


def worker():
    try:
        gevent.sleep(10)
    finally:
        print("worker: cleaning up")


w = gevent.spawn(worker)
gevent.sleep(0)  # let it start and block
w.kill()  # raises GreenletExit inside it; waits until it is dead
print("worker dead:", w.dead)


def echo(sock, address):
    with sock:
        sock.sendall(sock.recv(100).upper())


server = StreamServer(("127.0.0.1", 0), echo)
server.start()
with socket.create_connection(("127.0.0.1", server.server_port)) as conn:  # patched socket
    conn.sendall(b"hello")
    print("echo:", conn.recv(100).decode())
server.stop()

started = time.monotonic()
gevent.joinall([gevent.spawn(time.sleep, 0.2) for _ in range(10)])  # patched time.sleep
print("ten 0.2 s sleeps overlapped:", time.monotonic() - started < 1.0)
