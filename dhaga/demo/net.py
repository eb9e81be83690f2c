"""The networking part of ``python -m dhaga demo``: unchanged urllib code, made concurrent.

`part_network` starts a local HTTP server (a dhaga `StreamServer`) that holds every request
for ``latency`` seconds, monkey-patches the process, and has ``requests`` dhagas each fetch one
URL with plain blocking ``urllib.request`` code. It patches the whole process, so it must run in
a process of its own (the demo runs every part in a child process). This module uses only
dhaga's public API and the standard library.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

__all__ = ["part_network"]


def part_network(requests: int = 1000, latency: float = 0.2) -> dict[str, Any]:
    """Fetch ``requests`` URLs at once with blocking urllib code; return the figures.

    Returns:
        ``ok`` (correct answers), ``seconds`` (wall time), ``sequential_seconds`` (what one
        after another would take), ``peak_in_flight`` (most requests the server held at once),
        ``threads`` (OS threads in the process at the end).
    """
    from .. import monkey

    monkey.patch_all(warn=False)
    import urllib.request

    import dhaga

    from .. import net

    in_flight = [0, 0]  # now, peak

    def slow_http(sock: Any, address: Any) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(4096)
            if not chunk:
                return
            request += chunk
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        time.sleep(latency)  # patched: stands for a slow backend
        in_flight[0] -= 1
        body = request.split(b" ", 2)[1]
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (len(body), body))

    server = net.StreamServer(("127.0.0.1", 0), slow_http, backlog=4096)
    server.start()
    base = f"http://127.0.0.1:{server.address[1]}"

    def fetch(i: int) -> bool:
        with urllib.request.urlopen(f"{base}/item/{i}", timeout=60) as response:
            return response.read() == b"/item/%d" % i

    start = time.perf_counter()
    with dhaga.Group() as group:
        jobs = [group.spawn(fetch, i) for i in range(requests)]
    seconds = time.perf_counter() - start
    server.stop(timeout=1)
    return {
        "requests": requests,
        "ok": sum(job.result() for job in jobs),
        "seconds": seconds,
        "sequential_seconds": requests * latency,
        "peak_in_flight": in_flight[1],
        "threads": threading.active_count(),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(json.dumps(part_network(n)))
