"""A concurrent HTTP fetcher: unchanged ``urllib.request`` code, made concurrent by monkey-patching.

``python examples/http_fetcher.py URL [URL...]`` fetches every URL at once from one OS thread.
With ``--selftest`` it starts a local server that answers each request after 100 ms, fetches
200 URLs from it, and prints how long that took (sequentially it would be 20 s).
"""

from dhaga import monkey

monkey.patch_all()  # first, before importing anything that opens sockets

import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import dhaga  # noqa: E402
from dhaga import net  # noqa: E402


def fetch(url: str) -> tuple[str, int, int]:
    """Plain blocking code: exactly what you would write without dhaga."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return url, response.status, len(response.read())


def fetch_all(urls: list[str]) -> list[tuple[str, int, int]]:
    with dhaga.Group() as group:
        jobs = [group.spawn(fetch, url) for url in urls]
    return [job.result() for job in jobs]


def slow_handler(sock: net.socket, address: tuple) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = sock.recv(4096)
        if not chunk:
            return
        request += chunk
    time.sleep(0.1)  # patched: only this connection's dhaga waits
    body = b"hello from " + request.split(b" ")[1]
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                 % (len(body), body))


def main(argv: list[str]) -> int:
    if "--selftest" in argv or not argv:
        server = net.StreamServer(("127.0.0.1", 0), slow_handler)
        server.start()
        urls = [f"http://127.0.0.1:{server.address[1]}/page/{i}" for i in range(200)]
        start = time.perf_counter()
        results = fetch_all(urls)
        elapsed = time.perf_counter() - start
        server.stop(timeout=1)
        ok = sum(status == 200 for _url, status, _size in results)
        print(f"fetched {ok}/{len(urls)} pages in {elapsed:.2f}s from one OS thread "
              f"(each took 0.1s: {len(urls) * 0.1:.0f}s one after another)")
        return 0
    for url, status, size in fetch_all(argv):
        print(f"{status} {size:>8} bytes  {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
