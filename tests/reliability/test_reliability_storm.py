"""A kill storm that must lose nothing, and a short mixed soak whose RSS, fds and dhagas level off.

Kill storm: consumers, producers and lock users killed at random blocking points while they
work; every item put is got or still queued, every semaphore permit comes back, the lock ends
free. Soak: rounds of RPC calls (new clients each round), HTTP requests and mq messages in one
process; after two warm-up rounds, fds and live dhagas return to the same count and traced
memory stays within a small bound.
"""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest
from reliability_kit import open_fds
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

import dhaga
from dhaga import mq, net, rpc
from dhaga.queues import Queue
from dhaga.semaphores import Semaphore
from dhaga.sync import Lock
from dhaga.testing import settle
from dhaga.web import WSGIServer


@pytest.mark.timeout(60)
def test_kill_storm_loses_nothing():
    rng = random.Random(17)
    q: Queue = Queue(maxsize=50)
    sem = Semaphore(5)
    lock = Lock()
    put: list[int] = []
    got: list[int] = []
    counter = iter(range(10**9))
    in_lock = [0]

    def producer():
        while True:
            item = next(counter)
            q.put(item)
            put.append(item)

    def consumer():
        while True:
            got.append(q.get())

    def permit_user():
        while True:
            with sem:
                dhaga.sleep(0)

    def lock_user():
        while True:
            with lock:
                in_lock[0] += 1
                assert in_lock[0] == 1
                dhaga.sleep(0)
                in_lock[0] -= 1

    kinds = [producer, consumer, permit_user, lock_user]
    workers = [dhaga.spawn(kinds[i % 4]) for i in range(400)]
    for _ in range(3000):
        i = rng.randrange(len(workers))
        workers[i].kill(block=rng.random() < 0.5)
        workers[i] = dhaga.spawn(kinds[i % 4])
        if rng.random() < 0.3:
            dhaga.sleep(0)
    for w in workers:
        w.kill()
    settle()
    rest = []
    while not q.empty():
        rest.append(q.get_nowait())
    assert sorted(got + rest) == sorted(put) and len(put) > 1000
    assert all(sem.acquire(blocking=False) for _ in range(5)) and not sem.acquire(False)
    assert lock.acquire(blocking=False)
    lock.release()


def hello(env, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_short_soak_levels_off():
    rpc_server = rpc.Server()
    rpc_server.register("echo", lambda x: x)
    rpc_server.listen(("127.0.0.1", 0))
    rpc_server.start()
    web = WSGIServer(hello, ("127.0.0.1", 0))
    web.start()
    pull = mq.Socket(mq.PULL)
    endpoint = pull.bind("tcp://127.0.0.1:*")
    push = mq.Socket(mq.PUSH)
    push.connect(endpoint)

    def http_get() -> bytes:
        sock = net.create_connection(web.address, timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
        return data

    def one_round() -> None:
        clients = [rpc.Client(rpc_server.address, timeout=10) for _ in range(10)]
        with dhaga.Group() as g:
            calls = [g.spawn(c.call, "echo", b"x" * i) for c in clients for i in range(30)]
            pages = [g.spawn(http_get) for _ in range(30)]
        assert all(t.result() == b"x" * (i % 30) for i, t in enumerate(calls))
        assert all(p.result().endswith(b"hello") for p in pages)
        for c in clients:
            c.close()
        for i in range(200):
            push.send(b"%d" % i)
        assert [pull.recv(timeout=10) for _ in range(200)] == [b"%d" % i for i in range(200)]
        settle()
        while rpc_server.connections:
            dhaga.sleep(0.01)
        gc.collect()

    tracemalloc.start()
    try:
        samples = []
        for _ in range(10):
            one_round()
            samples.append((open_fds(), dhaga.get_scheduler().alive,
                            tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()
        push.close(linger=0)
        pull.close(linger=0)
        web.stop(timeout=0)
        rpc_server.stop(timeout=0)
    steady = samples[2:]  # after two warm-up rounds
    assert len({fds for fds, _, _ in steady}) == 1, samples
    assert len({alive for _, alive, _ in steady}) == 1, samples
    memory = [m for _, _, m in steady]
    assert max(memory) - memory[0] < 512 * 1024, samples
