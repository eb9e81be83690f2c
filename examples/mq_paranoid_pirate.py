"""Paranoid Pirate (zguide chapter 4): a queue and workers that watch each other by heartbeats,
with Lazy Pirate clients that retry what a lost worker took with it.

Run it as is: it starts the queue (a dhaga) and three workers (child processes), then two
clients send ten requests each. One worker gets stuck on its second request and is killed
with SIGKILL: its connection drops. Another gets stuck on its third and is frozen with
SIGSTOP: its connection stays up, and only the missing heartbeats tell the queue it is gone.
The clients retry, the surviving worker answers, and every request is answered.

The Paranoid Pirate Protocol: a worker says READY (``b"\\x01"``) once, then both sides send
HEARTBEAT (``b"\\x02"``) every ``HEARTBEAT_INTERVAL``; a side that hears nothing for
``HEARTBEAT_LIVENESS`` intervals counts the other as dead (a worker then reconnects, with
exponential backoff). Here a worker heartbeats from a dhaga of its own, so a worker busy with a
long request still looks alive: the queue watches busy workers too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict

import dhaga
from dhaga import mq

HEARTBEAT_INTERVAL = 0.1  # seconds
HEARTBEAT_LIVENESS = 3  # intervals of silence before a peer counts as dead
INTERVAL_INIT, INTERVAL_MAX = 0.1, 1.6  # worker reconnect backoff, seconds
READY, HEARTBEAT = b"\x01", b"\x02"
REQUEST_TIMEOUT, RETRIES = 0.6, 10
CLIENTS, REQUESTS = 2, 10


# ---------------------------------------------------------------------------- the queue
def queue(frontend: mq.Socket, backend: mq.Socket, expiry: dict[bytes, float],
          dead: list[str]) -> None:
    """Route client requests to the least recently used idle worker; heartbeat every worker
    and forget the ones that fall silent (busy ones included).

    Args:
        expiry: filled with every live worker, idle or busy, and when it expires.
        dead: filled with the workers counted dead.
    """
    idle: OrderedDict[bytes, None] = OrderedDict()  # least recently used first
    poll_workers, poll_both = mq.Poller(), mq.Poller()
    poll_workers.register(backend, mq.POLLIN)
    poll_both.register(backend, mq.POLLIN)
    poll_both.register(frontend, mq.POLLIN)
    heartbeat_at = time.monotonic() + HEARTBEAT_INTERVAL
    while True:
        ready = dict((poll_both if idle else poll_workers).poll(HEARTBEAT_INTERVAL))
        now = time.monotonic()
        if backend in ready:
            address, *msg = backend.recv_multipart()
            expiry[address] = now + HEARTBEAT_INTERVAL * HEARTBEAT_LIVENESS
            if msg != [HEARTBEAT]:  # READY, or a reply: the worker is idle now
                idle[address] = None
                if msg != [READY]:
                    frontend.send_multipart(msg)  # the reply: [client, b"", body]
        if frontend in ready and idle:
            request = frontend.recv_multipart()
            while idle:
                address, _ = idle.popitem(last=False)
                try:
                    backend.send_multipart([address, *request])
                    break
                except mq.HostUnreachable:  # its connection is gone already
                    pass
        if now >= heartbeat_at:
            heartbeat_at = now + HEARTBEAT_INTERVAL
            for address in expiry:
                try:
                    backend.send_multipart([address, HEARTBEAT])
                except mq.HostUnreachable:
                    pass
        for address, deadline in list(expiry.items()):
            if deadline < now:
                del expiry[address]
                idle.pop(address, None)
                dead.append(address.decode())
                print(f"  queue: {address.decode()} sent no heartbeat for "
                      f"{HEARTBEAT_LIVENESS} intervals: counted dead", flush=True)


# ---------------------------------------------------------------------------- a worker
class Worker:
    """Serves requests in one dhaga and heartbeats from another, so that a worker busy with a
    long request still looks alive; only a dead or frozen process falls silent."""

    def __init__(self, endpoint: str, name: str, hold_on: int) -> None:
        self.endpoint, self.name, self.hold_on = endpoint, name, hold_on
        self.sock = self._connect()

    def _connect(self) -> mq.Socket:
        sock = mq.Socket(mq.DEALER, routing_id=self.name.encode(), linger=0)
        sock.connect(self.endpoint)
        sock.send(READY)
        return sock

    def heartbeat(self) -> None:
        while True:
            dhaga.sleep(HEARTBEAT_INTERVAL)
            try:
                self.sock.send(HEARTBEAT, timeout=0)
            except (dhaga.Timeout, mq.SocketClosed):
                pass  # not connected right now

    def serve(self) -> None:
        liveness, interval, served = HEARTBEAT_LIVENESS, INTERVAL_INIT, 0
        while True:
            try:
                msg = self.sock.recv_multipart(timeout=HEARTBEAT_INTERVAL)
            except dhaga.Timeout:
                liveness -= 1
                if liveness == 0:  # the queue is gone: reconnect, backing off
                    dhaga.sleep(interval)
                    interval = min(interval * 2, INTERVAL_MAX)
                    old, self.sock = self.sock, self._connect()
                    old.close(linger=0)
                    liveness = HEARTBEAT_LIVENESS
                continue
            liveness, interval = HEARTBEAT_LIVENESS, INTERVAL_INIT
            if len(msg) == 3:  # [client, b"", body]
                served += 1
                if served == self.hold_on:
                    print("holding", msg[2].decode(), flush=True)
                    dhaga.sleep(3600)  # stuck with the request: killed or frozen from outside
                self.sock.send_multipart([*msg[:2], msg[2] + b" by " + self.name.encode()])


def worker(endpoint: str, name: str, hold_on: int) -> None:
    w = Worker(endpoint, name, hold_on)
    dhaga.spawn(w.heartbeat)
    w.serve()


# ---------------------------------------------------------------------------- a client
def client(endpoint: str, tag: str, answers: dict[str, bytes], retries: list[str]) -> None:
    """A Lazy Pirate client: resend after a timeout, on a fresh REQ socket."""
    sock = mq.Socket(mq.REQ, linger=0, reconnect_ivl=20)
    sock.connect(endpoint)
    for seq in range(1, REQUESTS + 1):
        body = f"{tag}-{seq}".encode()
        for _ in range(RETRIES):
            sock.send(body)
            try:
                reply = sock.recv(timeout=REQUEST_TIMEOUT)
            except dhaga.Timeout:
                retries.append(body.decode())
                sock.close(linger=0)
                sock = mq.Socket(mq.REQ, linger=0, reconnect_ivl=20)
                sock.connect(endpoint)
                continue
            if reply.startswith(body + b" by "):
                answers[body.decode()] = reply
                break
        else:
            raise RuntimeError(f"{body!r} was never answered")
    sock.close(linger=0)


# ---------------------------------------------------------------------------- the script
def start_worker(endpoint: str, name: str, hold_on: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", endpoint,
                             name, str(hold_on)], stdout=subprocess.PIPE, text=True)


def sabotage(proc: subprocess.Popen, name: str, how: signal.Signals, log: list[str]) -> None:
    """Wait until the worker is stuck holding a request, then kill or freeze it."""
    held = dhaga.to_thread(proc.stdout.readline).split()[1]  # type: ignore[union-attr]
    os.kill(proc.pid, how)
    verb = "killed it with SIGKILL" if how == signal.SIGKILL else "froze it with SIGSTOP"
    log.append(f"{name} got stuck holding {held!r}: {verb}")
    print(f"  {log[-1]}", flush=True)


def main() -> int:
    frontend = mq.Socket(mq.ROUTER, linger=0)
    backend = mq.Socket(mq.ROUTER, linger=0, router_mandatory=True)
    front = frontend.bind("tcp://127.0.0.1:*")
    back = backend.bind("tcp://127.0.0.1:*")
    dead: list[str] = []
    workers: dict[bytes, float] = {}
    broker = dhaga.spawn(queue, frontend, backend, workers, dead)
    plan = [("worker-A", 2, signal.SIGKILL), ("worker-B", 3, signal.SIGSTOP), ("worker-C", 0, None)]
    procs, log = [], []
    saboteurs = []
    for name, hold_on, how in plan:
        procs.append(start_worker(back, name, hold_on))
        if how is not None:
            saboteurs.append(dhaga.spawn(sabotage, procs[-1], name, how, log))
    answers: dict[str, bytes] = {}
    retries: list[str] = []
    try:
        deadline = time.monotonic() + 10
        while len(workers) < len(plan) and time.monotonic() < deadline:
            dhaga.sleep(0.05)  # until every worker said READY
        dhaga.joinall([dhaga.spawn(client, front, f"c{i}", answers, retries)
                       for i in range(1, CLIENTS + 1)], raise_error=True, timeout=60)
        dhaga.joinall(saboteurs, timeout=5)
        deadline = time.monotonic() + 5
        while len(dead) < 2 and time.monotonic() < deadline:  # both saboteurs' victims
            dhaga.sleep(HEARTBEAT_INTERVAL)
    finally:
        broker.kill()
        for proc in procs:
            proc.kill()
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a frozen process dies once resumed
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        frontend.close()
        backend.close()
    total = CLIENTS * REQUESTS
    served: dict[str, int] = {}
    for reply in answers.values():
        who = reply.rsplit(b" by ", 1)[1].decode()
        served[who] = served.get(who, 0) + 1
    print("answers by worker:", ", ".join(f"{w}: {n}" for w, n in sorted(served.items())))
    print(f"the queue counted {len(dead)} worker(s) dead:", ", ".join(sorted(dead)))
    print(f"{len(retries)} requests retried after a timeout: {', '.join(retries)}")
    print(f"every request answered: {len(answers)}/{total}")
    return 0 if len(answers) == total else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        dhaga.run(worker, sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(dhaga.run(main))
