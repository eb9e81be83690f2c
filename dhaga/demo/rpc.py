"""The demo's RPC part: thousands of blocking msgpack-rpc calls at once through one Client.

An RPC server with a slow method runs in its own OS thread (with its own scheduler); the demo
then makes ``calls`` concurrent calls to it from as many dhagas, through one shared `Client`,
and reports how long they took and how many connections and OS threads that needed. This module
uses only dhaga's public API, the demo's server helper and the standard library;
``python -m dhaga.demo.rpc`` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import dhaga

from .. import rpc
from ._server import server_in_thread

__all__ = ["part_rpc"]


def _server(latency: float) -> rpc.Server:
    """The demo's RPC server, listening on a free port."""
    server = rpc.Server()

    @server.method
    def slow_square(x: int) -> int:
        dhaga.sleep(latency)  # stands for a database query or a slow backend
        return x * x

    server.listen(("127.0.0.1", 0))
    return server


def part_rpc(calls: int = 10_000, latency: float = 0.05) -> dict[str, Any]:
    """Make ``calls`` concurrent blocking RPC calls, each taking ``latency`` on the server.

    Returns:
        ``calls``, ``total`` (sum of the results, each checked), ``seconds``,
        ``calls_per_second``, ``connections`` (opened by the client), ``peak_in_flight`` and
        ``threads`` (OS threads in this process, the server's included).
    """
    with server_in_thread(lambda: _server(latency), "demo-rpc-server") as server:
        return _calls(server.address, calls)


def _calls(address: Any, calls: int) -> dict[str, Any]:
    in_flight = peak = 0

    def one_call(client: rpc.Client, i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            result = client.call("slow_square", i)
        finally:
            in_flight -= 1
        if result != i * i:
            raise AssertionError(f"slow_square({i}) returned {result}")
        return result

    def main() -> dict[str, Any]:
        with rpc.Client(address, timeout=60) as client:
            client.call("slow_square", 0)  # connect before the clock starts
            start = time.perf_counter()
            with dhaga.Group() as group:
                tasks = [group.spawn(one_call, client, i) for i in range(calls)]
            seconds = time.perf_counter() - start
            return {
                "calls": calls,
                "total": sum(t.result() for t in tasks),
                "seconds": seconds,
                "calls_per_second": calls / seconds,
                "connections": client.connections_opened,
                "peak_in_flight": peak,
                "threads": threading.active_count(),
            }

    return dhaga.run(main)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dhaga.demo.rpc", description=__doc__)
    ap.add_argument("--calls", type=int, default=10_000, help="concurrent calls (10,000)")
    ap.add_argument("--latency", type=float, default=0.05, help="server time per call (0.05 s)")
    args = ap.parse_args(argv)
    print(json.dumps(part_rpc(args.calls, args.latency)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
