"""Hostile HTTP requests against dhaga.web's WSGIServer: the answer, still serving, fds and memory.

The RFC 9112 cases of issue 17 item 5 are rows too: heads that can never become valid (ended
by bare LFs, a TLS ClientHello, binary) are answered 400 at once, not 408 after the head
timeout (the fixture's is 5 s, so a late answer shows as 408 here); two equal Content-Length
fields reach the application as one value, and an absolute-form target names the host.
"""

from __future__ import annotations

import pytest
from reliability_kit import baseline, send_and_read_until_closed
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

from dhaga.web import WSGIServer

HOST = b"Host: x\r\n"


def app(env, start_response):
    body = env["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok %d" % len(body)]


@pytest.fixture
def server():
    srv = WSGIServer(app, ("127.0.0.1", 0), max_body_size=1000, header_timeout=5)
    srv.start()
    yield srv
    srv.stop(timeout=0)


def post(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\n" + HOST + headers + b"\r\n" + body


CASES = {  # request bytes -> the status line's code
    "request line over 8190 bytes": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
                                     414),
    "head over 64 KiB": (b"GET / HTTP/1.1\r\n" + HOST + b"X-A: " + b"b" * 70_000 + b"\r\n\r\n",
                         431),
    "150 header fields": (b"GET / HTTP/1.1\r\n" + HOST
                          + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431),
    "bad method token": (b"G@T / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "HTTP/2.0 in a 1.x head": (b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505),
    "HTTP/1.1 without Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two Host fields": (b"GET / HTTP/1.1\r\n" + HOST + b"Host: y\r\n\r\n", 400),
    "Content-Length not a number": (post(b"Content-Length: abc\r\n"), 400),
    "negative Content-Length": (post(b"Content-Length: -1\r\n"), 400),
    "Content-Length with a sign": (post(b"Content-Length: +2\r\n", b"ab"), 400),
    "different Content-Length fields": (post(b"Content-Length: 1\r\nContent-Length: 2\r\n",
                                             b"ab"), 400),
    "Content-Length and chunked (smuggling)": (
        post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400),
    "unknown transfer coding": (post(b"Transfer-Encoding: gzip\r\n"), 501),
    "chunked twice": (post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), 501),
    "bad chunk size": (post(b"Transfer-Encoding: chunked\r\n", b"zz\r\n"), 400),
    "chunk size over 16 hex digits": (post(b"Transfer-Encoding: chunked\r\n",
                                           b"f" * 18 + b"\r\n"), 400),
    "NUL in a chunk extension": (post(b"Transfer-Encoding: chunked\r\n",
                                      b'2;a="\x00"\r\nab\r\n0\r\n\r\n'), 400),
    "space before the colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\r\n b\r\n\r\n", 400),
    "NUL in a field value": (b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n", 400),
    "body over max_body_size": (post(b"Content-Length: 2000\r\n", b"a" * 2000), 413),
    "head ended by bare LFs": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "TLS ClientHello": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)), 400),
    "binary garbage": (bytes(range(256)), 400),
    "absolute-form with an unknown scheme": (b"GET ftp://h/p HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "absolute-form with user info": (b"GET http://u@h/p HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "chunked body over max_body_size": (post(b"Transfer-Encoding: chunked\r\n",
                                             b"7d0\r\n" + b"a" * 2000 + b"\r\n0\r\n\r\n"), 413),
}


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer[9:12])


def still_serves(srv) -> None:
    answer = send_and_read_until_closed(
        srv.address, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close"
                     b"\r\n\r\nabc")
    assert status(answer) == 200 and answer.endswith(b"ok 3"), answer


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_request(server, case):
    data, expected = CASES[case]
    send_and_read_until_closed(server.address, data)  # first use: caches, imports
    with baseline():
        answer = send_and_read_until_closed(server.address, data)
        assert status(answer) == expected, answer[:200]
        assert b"Connection: close" in answer.split(b"\r\n\r\n")[0]
        still_serves(server)


def echo_app(env, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{env.get('CONTENT_LENGTH')}|{env['HTTP_HOST']}|{env['PATH_INFO']}|"
            .encode() + env["wsgi.input"].read()]


@pytest.mark.parametrize(("request_bytes", "seen"), [
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
     b"Connection: close\r\n\r\nab", b"2|x|/|ab"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\nConnection: close\r\n\r\nab",
     b"2|x|/|ab"),
    (b"GET http://h2/p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"None|h2|/p|"),
])
def test_rfc9112_fields_reach_the_app_normalised(request_bytes, seen):
    srv = WSGIServer(echo_app, ("127.0.0.1", 0), header_timeout=5)
    srv.start()
    try:
        with baseline():
            answer = send_and_read_until_closed(srv.address, request_bytes)
            assert status(answer) == 200 and answer.endswith(seen), answer
    finally:
        srv.stop(timeout=0)
