"""Child script: unchanged blocking HTTP clients, made concurrent by dhaga.monkey.patch_all().

Runs a local HTTP(S) server that holds every request for DELAY seconds and counts how many
are in flight at once, then N dhagas each make one blocking request with each client library.
Prints one JSON line: per client, the elapsed time, the server's peak concurrency, the number
of correct answers and the most OS threads seen.
"""

from dhaga import monkey

monkey.patch_all()

import http.client  # noqa: E402 - after patching, on purpose
import json  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import requests  # noqa: E402
from netkit import make_self_signed  # noqa: E402

import dhaga  # noqa: E402
from dhaga import net  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 500
DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
CLIENTS = sys.argv[3].split(",") if len(sys.argv) > 3 else ["requests", "urllib", "http.client", "https"]


class DelayServer:
    """A tiny HTTP/1.1 server: read a request, wait DELAY (time.sleep, patched), answer."""

    def __init__(self, ssl_context=None):
        self.in_flight = 0
        self.peak = 0
        self.server = net.StreamServer(("127.0.0.1", 0), self.handle, ssl_context=ssl_context)
        self.server.start()

    def handle(self, sock, addr):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return
            data += chunk
        path = data.split(b" ", 2)[1]
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(DELAY)  # the patched, green time.sleep
        finally:
            self.in_flight -= 1
        body = b"echo " + path
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n"
                     b"Content-Type: text/plain\r\n\r\n%s" % (len(body), body))


def run_clients(fetch, base):
    threads = [threading.active_count()]

    def one(i):
        threads.append(threading.active_count())
        return fetch(f"{base}/item{i}") == f"echo /item{i}"

    start = time.perf_counter()
    results = [d.result(60) for d in [dhaga.spawn(one, i) for i in range(N)]]
    return time.perf_counter() - start, sum(results), max(threads)


def main():
    tmp = tempfile.mkdtemp()
    cert, key = make_self_signed(tmp)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)

    def with_requests(url):
        return requests.get(url, timeout=30).text

    def with_urllib(url):
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.read().decode()

    def with_http_client(url):
        host, port = url.split("/")[2].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/" + url.split("/", 3)[3])
        text = conn.getresponse().read().decode()
        conn.close()
        return text

    def with_https(url):
        return requests.get(url, timeout=30, verify=cert).text

    def with_https_urllib(url):
        with urllib.request.urlopen(url, timeout=30, context=client_ctx) as r:
            return r.read().decode()

    table = {"requests": (with_requests, None), "urllib": (with_urllib, None),
             "http.client": (with_http_client, None), "https": (with_https, server_ctx),
             "https-urllib": (with_https_urllib, server_ctx)}
    out = {}
    for name in CLIENTS:
        fetch, ctx = table[name]
        srv = DelayServer(ctx)
        scheme = "https" if ctx else "http"
        elapsed, ok, threads = run_clients(fetch, f"{scheme}://127.0.0.1:{srv.server.address[1]}")
        srv.server.stop(timeout=5)
        out[name] = {"elapsed": elapsed, "peak": srv.peak, "ok": ok, "threads": threads}
    print(json.dumps({"n": N, "delay": DELAY, "results": out}))


if __name__ == "__main__":
    main()
