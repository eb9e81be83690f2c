"""Helpers for the web tests: an in-memory connection, and responses read back by http.client."""

from __future__ import annotations

import http.client
import io
from collections import deque
from typing import Any, Callable

from dhaga.web import WSGIHandler


class FakeSocket:
    """A connection in memory: scripted inbound chunks; every recv and send recorded in order.

    An inbound item may be bytes, an exception (raised by that recv) or a callable taking the
    socket and returning bytes (to look at what was sent so far).
    """

    family = -1

    def __init__(self, *chunks: Any) -> None:
        self.inbound: deque = deque(chunks)
        self.events: list[tuple[str, bytes]] = []
        self.sent = bytearray()
        self.timeouts: list[float | None] = []
        self.shut = False

    def recv(self, n: int) -> bytes:
        if not self.inbound or self.shut:
            self.events.append(("recv", b""))
            return b""
        item = self.inbound.popleft()
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            item = item(self)
        if len(item) > n:
            self.inbound.appendleft(item[n:])
            item = item[:n]
        self.events.append(("recv", item))
        return item

    def sendall(self, data: bytes) -> None:
        self.sent += data
        self.events.append(("send", bytes(data)))

    def settimeout(self, t: float | None) -> None:
        self.timeouts.append(t)

    def gettimeout(self) -> float | None:
        return None

    def shutdown(self, how: int) -> None:
        self.shut = True


def serve(app: Callable, *chunks: Any, address: Any = ("10.1.2.3", 5555), **kw: Any) -> FakeSocket:
    """Run a `WSGIHandler` over a `FakeSocket` fed ``chunks`` until the connection ends."""
    sock = FakeSocket(*chunks)
    WSGIHandler(app, server_address=("127.0.0.1", 8080), **kw)(sock, address)
    return sock


class _Unclosable(io.BytesIO):
    def close(self) -> None:
        pass


class _Sock:
    def __init__(self, data: bytes) -> None:
        self.f = _Unclosable(data)

    def makefile(self, mode: str) -> io.BytesIO:
        return self.f


class Reply:
    def __init__(self, r: http.client.HTTPResponse, body: bytes) -> None:
        self.status = r.status
        self.reason = r.reason
        self.headers = r.headers
        self.body = body
        self.will_close = r.will_close

    def __repr__(self) -> str:
        return f"<Reply {self.status} {dict(self.headers)} {self.body[:60]!r}>"


def replies(data: bytes, *methods: str, count: int | None = None) -> list[Reply]:
    """Parse the responses in ``data`` with http.client (one per method; GET by default).

    Checks that nothing follows the last one.
    """
    if not methods:
        methods = ("GET",) * (count or 1)
    sock = _Sock(bytes(data))
    out = []
    for method in methods:
        r = http.client.HTTPResponse(sock, method=method)  # type: ignore[arg-type]
        r.begin()
        out.append(Reply(r, r.read()))
    rest = sock.f.read()
    assert rest == b"", f"unexpected bytes after the responses: {rest[:200]!r}"
    return out


def reply(data: bytes, method: str = "GET") -> Reply:
    return replies(data, method)[0]


def hello(env: dict, start_response: Callable) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", env["PATH_INFO"].encode("latin-1")]


GET = b"GET /%s HTTP/1.1\r\nHost: test\r\n\r\n"


def get(path: str = "", extra: bytes = b"") -> bytes:
    return b"GET /" + path.encode() + b" HTTP/1.1\r\nHost: test\r\n" + extra + b"\r\n"
