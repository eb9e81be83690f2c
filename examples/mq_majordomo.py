"""Majordomo (MDP/0.1, zguide chapter 4): a service-oriented broker, its workers and clients.

Run it as is: it starts the broker (a dhaga) and three ``echo`` workers (child processes); three
clients send eight requests each, and ask the broker's ``mmi.service`` which services exist.
One worker gets stuck on its second request and is killed with SIGKILL. The broker counts it
dead when its heartbeats stop; the client whose request it held times out and sends it again,
and every request is answered.
With ``--curve`` every connection runs over CURVE (keys made at start).

The wire protocol is MDP/0.1 (https://rfc.zeromq.org/spec/7/): clients send
``[MDPC01, service, body...]`` on a REQ socket; workers talk to the broker on a DEALER with
``[b"", MDPW01, command, ...]``: READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict, deque

import dhaga
from dhaga import mq

CLIENT, WORKER = b"MDPC01", b"MDPW01"
READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT = (bytes([i]) for i in range(1, 6))
HEARTBEAT_INTERVAL = 0.1  # seconds
HEARTBEAT_LIVENESS = 3  # silent intervals before the other side counts as dead
REQUEST_TIMEOUT, RETRIES = 0.6, 10
CLIENTS, REQUESTS = 3, 8


# ---------------------------------------------------------------------------- the broker
class Broker:
    """One ROUTER for clients and workers; a queue of requests and of idle workers per service."""

    def __init__(self, sock: mq.Socket) -> None:
        self.sock = sock
        self.requests: dict[bytes, deque[list[bytes]]] = {}  # service -> [client, *body]
        self.idle: dict[bytes, OrderedDict[bytes, None]] = {}  # service -> idle workers
        self.workers: dict[bytes, tuple[bytes, float]] = {}  # worker -> (service, expiry)
        self.dead: list[str] = []

    def run(self) -> None:
        heartbeat_at = time.monotonic() + HEARTBEAT_INTERVAL
        while True:
            try:
                sender, _, header, *msg = self.sock.recv_multipart(timeout=HEARTBEAT_INTERVAL)
            except dhaga.Timeout:
                pass
            else:
                if header == CLIENT:
                    self.client_request(sender, msg[0], msg[1:])
                elif header == WORKER:
                    self.worker_message(sender, msg[0], msg[1:])
            now = time.monotonic()
            if now >= heartbeat_at:
                heartbeat_at = now + HEARTBEAT_INTERVAL
                for worker in list(self.workers):
                    self.send_worker(worker, HEARTBEAT)
            for worker, (_service, expiry) in list(self.workers.items()):
                if expiry < now:
                    self.forget(worker)
                    self.dead.append(worker.decode())
                    print(f"  broker: {worker.decode()} fell silent: counted dead", flush=True)

    def client_request(self, client: bytes, service: bytes, body: list[bytes]) -> None:
        if service.startswith(b"mmi."):  # the broker's own services (RFC 8)
            if service != b"mmi.service":
                code = b"501"
            else:
                code = b"200" if body and self.has_workers(body[0]) else b"404"
            self.sock.send_multipart([client, b"", CLIENT, service, code])
            return
        self.requests.setdefault(service, deque()).append([client, *body])
        self.dispatch(service)

    def has_workers(self, service: bytes) -> bool:
        return any(s == service for s, _ in self.workers.values())

    def worker_message(self, worker: bytes, command: bytes, rest: list[bytes]) -> None:
        known = worker in self.workers
        if command == READY and not known:
            self.workers[worker] = (rest[0], self.expiry())
            self.become_idle(worker)
        elif command == REPLY and known:
            service = self.workers[worker][0]
            client, _, *body = rest
            self.sock.send_multipart([client, b"", CLIENT, service, *body])
            self.become_idle(worker)
        elif command == HEARTBEAT and known:
            self.workers[worker] = (self.workers[worker][0], self.expiry())
        elif command == DISCONNECT:
            self.forget(worker)
        else:  # out of order (e.g. a worker we counted dead): make it start over
            self.send_worker(worker, DISCONNECT)
            self.forget(worker)

    def become_idle(self, worker: bytes) -> None:
        service = self.workers[worker][0]
        self.workers[worker] = (service, self.expiry())
        self.idle.setdefault(service, OrderedDict())[worker] = None
        self.dispatch(service)

    def dispatch(self, service: bytes) -> None:
        requests, idle = self.requests.get(service), self.idle.get(service)
        while requests and idle:
            worker, _ = idle.popitem(last=False)
            client, *body = requests.popleft()
            self.send_worker(worker, REQUEST, [client, b"", *body])

    def send_worker(self, worker: bytes, command: bytes, rest: list[bytes] = ()) -> None:
        self.sock.send_multipart([worker, b"", WORKER, command, *rest])

    def forget(self, worker: bytes) -> None:
        service, _ = self.workers.pop(worker, (None, 0))
        if service is not None:
            self.idle.get(service, {}).pop(worker, None)

    @staticmethod
    def expiry() -> float:
        return time.monotonic() + HEARTBEAT_INTERVAL * HEARTBEAT_LIVENESS


# ---------------------------------------------------------------------------- the worker API
class MajordomoWorker:
    """mdwrkapi: ``recv(reply)`` sends the last reply and returns the next request's body.

    Heartbeats come from their own dhaga, so a worker busy with a long request stays alive to
    the broker; if the broker falls silent, the worker reconnects.
    """

    def __init__(self, endpoint: str, service: bytes, name: str) -> None:
        self.endpoint, self.service, self.name = endpoint, service, name
        self.reply_to = b""
        self.sock = self._connect()
        dhaga.spawn(self._heartbeat)

    def _connect(self) -> mq.Socket:
        sock = mq.Socket(mq.DEALER, routing_id=self.name.encode(), linger=0,
                         **security(server=False))
        sock.connect(self.endpoint)
        sock.send_multipart([b"", WORKER, READY, self.service])
        return sock

    def _heartbeat(self) -> None:
        while True:
            dhaga.sleep(HEARTBEAT_INTERVAL)
            try:
                self.sock.send_multipart([b"", WORKER, HEARTBEAT], timeout=0)
            except (dhaga.Timeout, mq.SocketClosed):
                pass

    def recv(self, reply: list[bytes] | None = None) -> list[bytes]:
        if reply is not None:
            self.sock.send_multipart([b"", WORKER, REPLY, self.reply_to, b"", *reply])
        liveness = HEARTBEAT_LIVENESS
        while True:
            try:
                _, header, command, *rest = self.sock.recv_multipart(timeout=HEARTBEAT_INTERVAL)
            except dhaga.Timeout:
                liveness -= 1
                if liveness == 0:
                    self._reconnect()
                    liveness = HEARTBEAT_LIVENESS
                continue
            liveness = HEARTBEAT_LIVENESS
            if command == REQUEST:
                self.reply_to = rest[0]
                return rest[2:]
            if command == DISCONNECT:
                self._reconnect()

    def _reconnect(self) -> None:
        old, self.sock = self.sock, self._connect()
        old.close(linger=0)


def worker(endpoint: str, name: str, hold_on: int) -> None:
    """An echo service worker; on request number ``hold_on`` it gets stuck."""
    mdp = MajordomoWorker(endpoint, b"echo", name)
    reply, served = None, 0
    while True:
        request = mdp.recv(reply)
        served += 1
        if served == hold_on:
            print("holding", request[0].decode(), flush=True)
            dhaga.sleep(3600)  # stuck: the script kills us
        reply = [*request, name.encode()]


# ---------------------------------------------------------------------------- the client API
class MajordomoClient:
    """mdcliapi: ``send(service, *body)`` returns the reply body, retrying on a fresh socket."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.retried: list[bytes] = []
        self.sock = self._connect()

    def _connect(self) -> mq.Socket:
        sock = mq.Socket(mq.REQ, linger=0, reconnect_ivl=20, **security(server=False))
        sock.connect(self.endpoint)
        return sock

    def send(self, service: bytes, *body: bytes) -> list[bytes]:
        for _ in range(RETRIES):
            self.sock.send_multipart([CLIENT, service, *body])
            try:
                header, replied_service, *reply = self.sock.recv_multipart(timeout=REQUEST_TIMEOUT)
            except dhaga.Timeout:
                self.retried.append(body[0])
                self.sock.close(linger=0)
                self.sock = self._connect()
                continue
            assert header == CLIENT and replied_service == service
            return reply
        raise RuntimeError(f"no reply from {service!r}")

    def close(self) -> None:
        self.sock.close(linger=0)


# ---------------------------------------------------------------------------- the script
def run_client(endpoint: str, tag: str, answers: dict[bytes, bytes], retried: list) -> None:
    client = MajordomoClient(endpoint)
    try:
        for seq in range(1, REQUESTS + 1):
            body = f"{tag}-{seq}".encode()
            reply = client.send(b"echo", body)
            if reply[0] == body:
                answers[body] = reply[1]
        retried += client.retried
    finally:
        client.close()


def main() -> int:
    sock = mq.Socket(mq.ROUTER, linger=0, **security(server=True))
    endpoint = sock.bind("tcp://127.0.0.1:*")
    broker = Broker(sock)
    broker_dhaga = dhaga.spawn(broker.run)
    names = ["worker-A", "worker-B", "worker-C"]
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", endpoint,
                               name, "2" if name == "worker-A" else "0"],
                              stdout=subprocess.PIPE, text=True) for name in names]
    answers: dict[bytes, bytes] = {}
    retried: list[bytes] = []

    def kill_when_stuck() -> None:
        held = dhaga.to_thread(procs[0].stdout.readline).split()[1]  # type: ignore[union-attr]
        os.kill(procs[0].pid, signal.SIGKILL)
        print(f"  worker-A got stuck holding {held!r}: killed it with SIGKILL", flush=True)

    killer = dhaga.spawn(kill_when_stuck)
    try:
        deadline = time.monotonic() + 10
        while len(broker.workers) < len(names) and time.monotonic() < deadline:
            dhaga.sleep(0.05)  # until every worker has registered
        mmi = MajordomoClient(endpoint)
        lookups = {name: mmi.send(b"mmi.service", name)[0] for name in (b"echo", b"nope")}
        mmi.close()
        dhaga.joinall([dhaga.spawn(run_client, endpoint, f"c{i}", answers, retried)
                       for i in range(1, CLIENTS + 1)], raise_error=True, timeout=60)
        killer.result(timeout=5)
        deadline = time.monotonic() + 5
        while "worker-A" not in broker.dead and time.monotonic() < deadline:
            dhaga.sleep(HEARTBEAT_INTERVAL)
    finally:
        broker_dhaga.kill()
        for proc in procs:
            proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        sock.close()
    served: dict[str, int] = {}
    for who in answers.values():
        served[who.decode()] = served.get(who.decode(), 0) + 1
    total = CLIENTS * REQUESTS
    print("mmi.service:", ", ".join(f"{k.decode()} -> {v.decode()}" for k, v in lookups.items()))
    print("answers by worker:", ", ".join(f"{w}: {n}" for w, n in sorted(served.items())))
    print("the broker counted dead:", ", ".join(broker.dead) or "nobody")
    print(f"{len(retried)} requests retried after a timeout:",
          ", ".join(r.decode() for r in retried))
    print(f"every request answered: {len(answers)}/{total}")
    return 0 if len(answers) == total else 1


# ---------------------------------------------------------------------------- CURVE (--curve)
def security(server: bool) -> dict:
    """Socket options: CURVE when the example runs with ``--curve`` (main makes the server's
    key pair and hands it to the child processes in the environment), else {} (NULL)."""
    public = os.environ.get("EXAMPLE_CURVE_PUBLIC")
    if not public:
        return {}
    if server:
        return {"curve_server": True, "curve_publickey": public,
                "curve_secretkey": os.environ["EXAMPLE_CURVE_SECRET"]}
    mine = mq.curve_keypair()  # no Authenticator runs: the server takes any client key
    return {"curve_serverkey": public, "curve_publickey": mine[0], "curve_secretkey": mine[1]}


def use_curve() -> None:
    public, secret = mq.curve_keypair()
    os.environ.update(EXAMPLE_CURVE_PUBLIC=public, EXAMPLE_CURVE_SECRET=secret)
    print("over CURVE: every connection encrypted")


if __name__ == "__main__":
    if "--curve" in sys.argv:
        sys.argv.remove("--curve")
        use_curve()
    if sys.argv[1:2] == ["worker"]:
        dhaga.run(worker, sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(dhaga.run(main))
