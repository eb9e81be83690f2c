"""BEFORE: a small eventlet program (docs/migrating-from-eventlet.md); its dhaga twin prints the same.

spawn, spawn_n, spawn_after, GreenPool, GreenPile, Timeout, tpool, green sockets with
eventlet.listen/serve, eventlet.wsgi, and monkey_patch. Run: python examples/migrate_eventlet_before.py
"""

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")  # it says so on import

import eventlet  # noqa: E402

eventlet.monkey_patch(thread=False)  # before anything imports socket or time

import socket  # noqa: E402 - patched above
import time  # noqa: E402
import urllib.request  # noqa: E402

import eventlet.wsgi  # noqa: E402
from eventlet import tpool  # noqa: E402
from eventlet.queue import Queue  # noqa: E402


def square(i):
    eventlet.sleep(0.01 * (5 - i))
    return i * i


gt = eventlet.spawn(square, 7)
print("spawn:", gt.wait())

results = Queue()
for i in range(3):
    eventlet.spawn_n(lambda i=i: results.put(square(i)))  # no handle: fire and forget
print("spawn_n:", sorted(results.get() for _ in range(3)))

later = eventlet.spawn_after(0.05, square, 3)
cancelled = eventlet.spawn_after(10, print, "never printed")
cancelled.cancel()  # not started yet: it never runs
print("spawn_after:", later.wait())

pool = eventlet.GreenPool(2)  # at most two at once
print("pool.imap:", list(pool.imap(square, range(5))))
pile = eventlet.GreenPile(pool)
for i in range(5):
    pile.spawn(square, i)
print("pile:", list(pile))  # in spawn order

try:
    with eventlet.Timeout(0.05):
        eventlet.sleep(10)
except eventlet.Timeout:
    print("timeout: the block expired")

print("tpool:", tpool.execute(sum, range(10)))  # a truly blocking call, in a real thread


def echo(sock, address):
    with sock:
        sock.sendall(sock.recv(100).upper())


listener = eventlet.listen(("127.0.0.1", 0))
port = listener.getsockname()[1]
serving = eventlet.spawn(eventlet.serve, listener, echo)
with socket.create_connection(("127.0.0.1", port)) as conn:  # patched socket
    conn.sendall(b"hello")
    print("echo:", conn.recv(100).decode())
serving.kill()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from " + environ["PATH_INFO"].encode()]


web = eventlet.listen(("127.0.0.1", 0))
web_port = web.getsockname()[1]
wsgi = eventlet.spawn(eventlet.wsgi.server, web, app, log_output=False)
with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/wsgi") as reply:  # patched urllib
    print("wsgi:", reply.status, reply.read().decode())
wsgi.kill()

started = time.monotonic()
sleepers = [eventlet.spawn(time.sleep, 0.2) for _ in range(10)]  # patched time.sleep
for s in sleepers:
    s.wait()
print("ten 0.2 s sleeps overlapped:", time.monotonic() - started < 1.0)
