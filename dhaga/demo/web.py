"""The demo's web part: one OS thread serves a thousand HTTP clients whose requests each wait.

A `dhaga.web.WSGIServer` runs in its own OS thread (with its own scheduler); its application
waits ``latency`` seconds per request (standing for a slow database or backend call). The demo
then opens ``clients`` connections at once from as many dhagas, each sending one request, and
reports how long they all took, the most requests the server had in flight together, and the OS
threads used. This module uses only dhaga's public API, the demo's server helper and the
standard library; ``python -m dhaga.demo.web`` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import sys
import threading
import time
from typing import Any

import dhaga

from .. import net
from ..web import WSGIServer
from ._server import server_in_thread

__all__ = ["part_web"]


class _GreenHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = net.create_connection((self.host, self.port), self.timeout)


def _server(latency: float, stats: dict) -> WSGIServer:
    """The demo's web server, listening on a free port."""

    def app(environ: dict, start_response: Any) -> list[bytes]:
        stats["in_flight"] += 1
        stats["peak"] = max(stats["peak"], stats["in_flight"])
        try:
            dhaga.sleep(latency)  # stands for a database query or a slow backend
        finally:
            stats["in_flight"] -= 1
        n = int(environ["PATH_INFO"].rsplit("/", 1)[1])
        body = str(n * n).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = WSGIServer(app, ("127.0.0.1", 0), backlog=4096)
    server.start()
    return server


def _raise_descriptor_limit(wanted: int) -> int:
    """Raise the soft limit on open files toward ``wanted``; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def part_web(clients: int = 1000, latency: float = 0.2) -> dict[str, Any]:
    """Send ``clients`` concurrent HTTP requests, each waiting ``latency`` in the server.

    Every client has its own connection (2 descriptors each in this process): ``clients`` is
    lowered if the open-files limit cannot be raised enough.

    Returns:
        ``clients``, ``total`` (sum of the answers, each checked), ``seconds``,
        ``requests_per_second``, ``peak_in_flight`` (requests the server was answering at
        once) and ``threads`` (OS threads in this process, the server's included).
    """
    limit = _raise_descriptor_limit(2 * clients + 200)
    clients = max(1, min(clients, (limit - 200) // 2))
    stats = {"in_flight": 0, "peak": 0}
    with server_in_thread(lambda: _server(latency, stats), "demo-web-server") as server:
        return _requests(server.address[:2], clients, stats)


def _requests(address: tuple, clients: int, stats: dict) -> dict[str, Any]:
    host, port = address

    def one_request(i: int) -> int:
        conn = _GreenHTTPConnection(host, port, timeout=60)
        try:
            conn.request("GET", f"/square/{i}")
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
        if reply.status != 200 or int(body) != i * i:
            raise AssertionError(f"/square/{i} answered {reply.status} {body[:100]!r}")
        return i * i

    def main() -> dict[str, Any]:
        one_request(0)  # warm up before the clock starts
        start = time.perf_counter()
        with dhaga.Group() as group:
            tasks = [group.spawn(one_request, i) for i in range(clients)]
        seconds = time.perf_counter() - start
        return {
            "clients": clients,
            "total": sum(t.result() for t in tasks),
            "seconds": seconds,
            "requests_per_second": clients / seconds,
            "peak_in_flight": stats["peak"],
            "threads": threading.active_count(),
        }

    return dhaga.run(main)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dhaga.demo.web", description=__doc__)
    ap.add_argument("--clients", type=int, default=1000, help="concurrent clients (1,000)")
    ap.add_argument("--latency", type=float, default=0.2, help="server wait per request (0.2 s)")
    args = ap.parse_args(argv)
    print(json.dumps(part_web(args.clients, args.latency)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
