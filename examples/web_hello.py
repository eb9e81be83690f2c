"""A WSGI app served by dhaga.web in this process, queried by 100 blocking-style clients at once."""

import http.client
import time

import dhaga
from dhaga import net
from dhaga.web import WSGIServer


def app(environ, start_response):
    dhaga.sleep(0.1)  # stands for a slow database call: it parks this request's dhaga only
    body = f"hello {environ['PATH_INFO'][1:]}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class GreenHTTPConnection(http.client.HTTPConnection):
    """The standard library's HTTP client over a dhaga socket."""

    def connect(self):
        self.sock = net.create_connection((self.host, self.port), self.timeout)


def get(address, path):
    conn = GreenHTTPConnection(*address[:2], timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def main():
    server = WSGIServer(app, ("127.0.0.1", 0))  # port 0: any free port
    server.start()
    print(f"serving on http://{server.address[0]}:{server.address[1]}")
    start = time.perf_counter()
    with dhaga.Group() as g:
        replies = [g.spawn(get, server.address, f"/user{i}") for i in range(100)]
    took = time.perf_counter() - start
    assert [r.result() for r in replies] == [f"hello user{i}" for i in range(100)]
    print(f"100 requests answered, each waited 100 ms, all in {took:.2f}s")
    server.stop(timeout=5)  # graceful: requests in flight would finish first
    print("stopped")


if __name__ == "__main__":
    main()
