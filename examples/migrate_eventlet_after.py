"""AFTER: examples/migrate_eventlet_before.py moved to dhaga (docs/migrating-from-eventlet.md).

The same program; it prints exactly what the eventlet version prints (a test runs both and
compares). Run: python examples/migrate_eventlet_after.py
"""

from dhaga import monkey

monkey.patch_all()  # eventlet.monkey_patch() -> dhaga.monkey.patch_all(), as early

import socket  # noqa: E402 - patched above
import time  # noqa: E402
import urllib.request  # noqa: E402

import dhaga  # noqa: E402
from dhaga.net import StreamServer  # noqa: E402
from dhaga.pool import Pool  # noqa: E402
from dhaga.sync import Queue  # noqa: E402
from dhaga.web import WSGIServer  # noqa: E402


def square(i):
    dhaga.sleep(0.01 * (5 - i))
    return i * i


gt = dhaga.spawn(square, 7)
print("spawn:", gt.result())  # .wait() -> .result()

results = Queue()
for i in range(3):
    dhaga.spawn(lambda i=i: results.put(square(i)))  # spawn_n -> spawn (ignore the handle)
print("spawn_n:", sorted(results.get() for _ in range(3)))

later = dhaga.spawn_later(0.05, square, 3)  # spawn_after -> spawn_later
cancelled = dhaga.spawn_later(10, print, "never printed")
cancelled.kill()  # .cancel() -> .kill(): not started yet, it never runs
print("spawn_after:", later.result())

pool = Pool(2)  # GreenPool -> dhaga.pool.Pool
print("pool.imap:", list(pool.imap(square, range(5))))
pile = [pool.spawn(square, i) for i in range(5)]  # GreenPile -> a list of handles
print("pile:", [d.result() for d in pile])  # in spawn order

try:
    with dhaga.timeout(0.05):  # eventlet.Timeout(...) -> dhaga.timeout(...)
        dhaga.sleep(10)
except dhaga.Timeout:
    print("timeout: the block expired")

print("tpool:", dhaga.to_thread(sum, range(10)))  # tpool.execute -> dhaga.to_thread


def echo(sock, address):
    with sock:
        sock.sendall(sock.recv(100).upper())


server = StreamServer(("127.0.0.1", 0), echo)  # eventlet.listen + eventlet.serve
server.start()
with socket.create_connection(("127.0.0.1", server.address[1])) as conn:  # patched socket
    conn.sendall(b"hello")
    print("echo:", conn.recv(100).decode())
server.stop()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from " + environ["PATH_INFO"].encode()]


web = WSGIServer(app, ("127.0.0.1", 0))  # eventlet.wsgi.server(listen(...), app)
web.start()
with urllib.request.urlopen(f"http://127.0.0.1:{web.address[1]}/wsgi") as reply:  # patched
    print("wsgi:", reply.status, reply.read().decode())
web.stop()

started = time.monotonic()
sleepers = [dhaga.spawn(time.sleep, 0.2) for _ in range(10)]  # patched time.sleep
for s in sleepers:
    s.result()
print("ten 0.2 s sleeps overlapped:", time.monotonic() - started < 1.0)
