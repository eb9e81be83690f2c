"""Lazy Pirate (zguide chapter 4): a REQ client that survives a crashed server by timing out,
reopening its socket and sending the request again.

Run it as is: it starts a REP server in a child process. That server gets stuck on its fourth
request; the script kills it (SIGKILL) while it holds the request and starts a fresh server on
the same endpoint. The client's retry reaches the new server, and every request is answered.
With ``--curve`` every connection runs over CURVE (keys made at start).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import dhaga
from dhaga import mq

REQUEST_TIMEOUT = 0.3  # seconds to wait for each reply
RETRIES = 8  # attempts per request before giving up
REQUESTS = 10


# ---------------------------------------------------------------------------- the server
def server(endpoint: str, hang_on: int) -> None:
    """An echo REP server; with ``hang_on``, it gets stuck on that request (never answers)."""
    rep = mq.Socket(mq.REP, **security(server=True))
    rep.bind(endpoint)
    print("ready", flush=True)
    served = 0
    while True:
        request = rep.recv()
        served += 1
        if served == hang_on:
            print("holding", request.decode(), flush=True)
            dhaga.sleep(3600)  # stuck: the supervisor kills us
        rep.send(request)


# ---------------------------------------------------------------------------- the client
class LazyPirateClient:
    """Sends each request until a reply comes, reopening the REQ socket after each timeout.

    A REQ socket whose reply is lost is stuck in "waiting for the reply" for good: the only
    way on is a new socket (the old one is closed without lingering).
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.retries = 0
        self._open()

    def _open(self) -> None:
        self.sock = mq.Socket(mq.REQ, linger=0, reconnect_ivl=20, **security(server=False))
        self.sock.connect(self.endpoint)

    def request(self, body: bytes) -> bytes:
        for _ in range(RETRIES):
            self.sock.send(body)
            try:
                reply = self.sock.recv(timeout=REQUEST_TIMEOUT)
            except dhaga.Timeout:
                self.retries += 1
                print(f"  no reply to {body.decode()!r} within {REQUEST_TIMEOUT}s: retrying")
                self.sock.close(linger=0)
                self._open()
                continue
            if reply == body:
                return reply
            print(f"  malformed reply {reply!r}")
        raise RuntimeError("server seems to be offline, abandoning")

    def close(self) -> None:
        self.sock.close(linger=0)


# ---------------------------------------------------------------------------- the supervisor
def start_server(endpoint: str, hang_on: int = 0) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "server", endpoint,
                             str(hang_on)], stdout=subprocess.PIPE, text=True)
    line = dhaga.to_thread(proc.stdout.readline)  # type: ignore[union-attr]
    assert line.startswith("ready"), line
    return proc


def supervise(endpoint: str, servers: list[subprocess.Popen]) -> None:
    """Kill the first server once it holds a request; start a healthy one in its place."""
    first = servers[0]
    line = dhaga.to_thread(first.stdout.readline)  # type: ignore[union-attr]
    held = line.split()[1]
    os.kill(first.pid, signal.SIGKILL)
    dhaga.to_thread(first.wait)
    print(f"  server 1 (pid {first.pid}) is stuck on {held!r}: killed it with SIGKILL")
    servers.append(start_server(endpoint))
    print(f"  server 2 (pid {servers[-1].pid}) started on the same endpoint")


def main() -> int:
    tmp = tempfile.mkdtemp(prefix="lazy-pirate-")
    endpoint = f"ipc://{tmp}/server"
    servers = [start_server(endpoint, hang_on=4)]
    watcher = dhaga.spawn(supervise, endpoint, servers)
    client = LazyPirateClient(endpoint)
    answered = 0
    try:
        for seq in range(1, REQUESTS + 1):
            body = f"request-{seq}".encode()
            if client.request(body) == body:
                answered += 1
                print(f"{body.decode()} answered")
        watcher.result(timeout=10)
    finally:
        client.close()
        for proc in servers:
            proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{REQUESTS} requests, {answered} answered, {client.retries} retries, "
          f"{len(servers) - 1} server killed and replaced")
    print(f"every request answered: {answered}/{REQUESTS}")
    return 0 if answered == REQUESTS else 1


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
    if sys.argv[1:2] == ["server"]:
        dhaga.run(server, sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(dhaga.run(main))
