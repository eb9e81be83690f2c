"""dhaga.web.wsgi over an in-memory connection: PEP 3333 rules, keep-alive, bodies, limits."""

from __future__ import annotations

import logging
import sys
import time

import pytest
from web_fakes import FakeSocket, get, hello, replies, reply, serve

from dhaga.web import Limits, wsgi


def record_environ(store: list):
    def app(env, start_response):
        store.append(dict(env))
        start_response("200 OK", [])
        return [b"ok"]
    return app


# ---------------------------------------------------------------------- environ
def test_environ_has_every_pep3333_key_as_native_strings():
    seen: list = []
    head = (b"POST /caf%C3%A9/a%20b;p?x=%41&y HTTP/1.1\r\nHost: example.org:81\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 3\r\nX-Caf: \xe9t\xe9\r\n\r\nabc")
    serve(record_environ(seen), head)
    env = seen[0]
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/caf\xc3\xa9/a b;p"  # decoded bytes, as latin-1 (PEP 3333)
    assert env["QUERY_STRING"] == "x=%41&y"          # not decoded
    assert env["RAW_URI"] == "/caf%C3%A9/a%20b;p?x=%41&y"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_HOST"] == "example.org:81"
    assert env["HTTP_X_CAF"] == "\xe9t\xe9"           # header bytes as latin-1
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", "8080")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("10.1.2.3", "5555")
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.errors"] is sys.stderr
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False and env["wsgi.input_terminated"] is True
    for key, value in env.items():
        assert type(key) is str
        if key.isupper():
            assert type(value) is str, key


def test_a_request_without_body_has_no_content_keys_and_an_empty_input():
    seen: list = []
    serve(record_environ(seen), get("x"))
    env = seen[0]
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env
    assert env["wsgi.input"].read() == b"" and env["wsgi.input"].readline() == b""


def test_repeated_headers_join_and_underscored_names_are_dropped():
    seen: list = []
    serve(record_environ(seen), get("", b"X-A: 1\r\nx-a: 2\r\nCookie: a=1\r\nCookie: b=2\r\n"
                                        b"X_Forwarded_For: 6.6.6.6\r\n"))
    env = seen[0]
    assert env["HTTP_X_A"] == "1,2"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_FORWARDED_FOR" not in env


def test_absolute_form_target():
    seen: list = []
    serve(record_environ(seen), b"GET http://example.org/p/q?z=1 HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert seen[0]["PATH_INFO"] == "/p/q" and seen[0]["QUERY_STRING"] == "z=1"


def test_each_request_gets_a_fresh_environ():
    seen: list = []

    def app(env, start_response):
        seen.append(env)
        env["mine"] = len(seen)
        start_response("200 OK", [])
        return [b""]

    serve(app, get("a", b"X-Only-First: 1\r\n") + get("b"))
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert "HTTP_X_ONLY_FIRST" not in seen[1] and seen[1]["mine"] == 2


def test_a_repeated_head_gets_a_fresh_environ_and_the_same_answers():
    seen: list = []

    def app(env, start_response):
        seen.append(dict(env))
        env["PATH_INFO"] = "/changed by the app"
        env["mine"] = len(seen)
        del env["HTTP_HOST"]
        start_response("200 OK", [])
        return [env["wsgi.input"].read()]

    body = post(b"abc")
    sock = serve(app, get("a") + get("a") + body + body + get("a", b"Connection: close\r\n")
                 + get("a"))
    answers = replies(sock.sent, count=5)
    assert [r.body for r in answers] == [b"", b"", b"abc", b"abc", b""]
    assert len(seen) == 5  # the sixth request came after Connection: close
    for env in seen:
        assert "mine" not in env and "HTTP_HOST" in env
    assert [env["PATH_INFO"] for env in seen] == ["/a", "/a", "/", "/", "/a"]
    assert seen[2]["wsgi.input"] is not seen[3]["wsgi.input"]  # each body its own input


def test_response_headers_repeated_on_a_connection_are_still_checked_and_current():
    shared = [["X-Count", "0"]]  # a list the application changes in place
    answers = iter([
        ("200 OK", [("Content-Type", "text/plain")]),
        ("200 OK", [("Content-Type", "text/plain")]),           # the same: remembered
        ("200 OK", shared),
        ("200 OK", shared),
        ("200 OK", [("Content-Type", "text/plain\r\nX-Evil: 1")]),  # same status, bad value
    ])

    def app(env, start_response):
        status, headers = next(answers)
        if headers is shared:
            shared[0][1] = str(int(shared[0][1]) + 1)
        start_response(status, headers)
        return [b"x"]

    sock = serve(app, get("a") * 5)
    r = replies(sock.sent, count=5)
    assert [x.status for x in r] == [200, 200, 200, 200, 500]
    assert r[1].headers["Content-Type"] == "text/plain"
    assert r[2].headers["X-Count"] == "1" and r[3].headers["X-Count"] == "2"
    assert "X-Evil" not in r[4].headers


def test_a_reused_response_head_follows_the_date_keep_alive_length_and_method(monkeypatch):
    import types

    from dhaga.web import protocol, response

    now = [0.0]  # a clock the application moves: 2024-01-01 00:00:00.5, then a second on
    times = iter([1704067200.5] * 2 + [1704067201.5] * 4)
    monkeypatch.setattr(response, "_time", lambda: now[0])
    monkeypatch.setattr(protocol, "time", types.SimpleNamespace(time=lambda: now[0]))
    monkeypatch.setattr(protocol, "DATE", [0.0, ""])
    monkeypatch.setattr(response, "DATE", protocol.DATE)
    sizes = iter([2, 2, 2, 3, 3, 3])

    def app(env, start_response):
        now[0] = next(times)
        start_response("200 OK", [("Content-Type", "text/plain")])  # the same every time
        return [b"x" * next(sizes)]

    head = b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n"
    sock = serve(app, get() + get() + get() + get() + head + get("", b"Connection: close\r\n"))
    r = replies(sock.sent, "GET", "GET", "GET", "GET", "HEAD", "GET")
    assert [x.headers["Date"][-12:] for x in r] == ["00:00:00 GMT"] * 2 + ["00:00:01 GMT"] * 4
    assert [x.headers["Content-Length"] for x in r] == ["2", "2", "2", "3", "3", "3"]
    assert [x.body for x in r] == [b"xx"] * 3 + [b"xxx", b"", b"xxx"]
    assert [x.will_close for x in r] == [False] * 5 + [True]


# ---------------------------------------------------------------------- start_response
def test_a_list_goes_out_in_one_send_with_a_computed_length():
    sock = serve(hello, get("abc", b"Connection: close\r\n"))
    sends = [data for kind, data in sock.events if kind == "send"]
    assert len(sends) == 1
    r = reply(sock.sent)
    assert r.status == 200 and r.body == b"hello /abc"
    assert r.headers["Content-Length"] == "10" and r.headers["Date"].endswith("GMT")
    assert r.headers["Connection"] == "close"


def test_write_callable_sends_before_the_iterable():
    def app(env, start_response):
        write = start_response("200 OK", [("Content-Length", "11")])
        write(b"hello")
        write(b"")
        return [b" ", b"world"]

    r = reply(serve(app, get()).sent)
    assert r.body == b"hello world" and r.headers["Content-Length"] == "11"


def test_the_head_waits_for_the_first_nonempty_chunk():
    """An error before any body bytes can still become a 500 (PEP 3333)."""
    closed = []

    class Body:
        def __iter__(self):
            yield b""
            raise ValueError("boom")

        def close(self):
            closed.append(True)

    def app(env, start_response):
        start_response("200 OK", [])
        return Body()

    r = reply(serve(app, get()).sent)
    assert r.status == 500 and closed == [True]


def test_exc_info_replaces_the_status_before_the_head_is_sent():
    def app(env, start_response):
        start_response("200 OK", [("X-Old", "1")])
        try:
            raise KeyError("x")
        except KeyError:
            start_response("503 Busy", [("X-New", "1")], sys.exc_info())
        return [b"later"]

    r = reply(serve(app, get()).sent)
    assert (r.status, r.body) == (503, b"later")
    assert "X-New" in r.headers and "X-Old" not in r.headers


def test_exc_info_after_the_head_reraises_and_aborts_the_connection():
    raised = []

    def app(env, start_response):
        write = start_response("200 OK", [("Content-Length", "100")])
        write(b"partial")
        try:
            raise KeyError("late")
        except KeyError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except KeyError as e:
                raised.append(e)
                raise

    sock = serve(app, get() + get("never"))
    assert len(raised) == 1
    assert sock.sent.startswith(b"HTTP/1.1 200 OK") and sock.sent.endswith(b"partial")
    assert b"never" not in sock.sent


def test_start_response_twice_without_exc_info_is_an_error():
    errors = []

    def app(env, start_response):
        start_response("200 OK", [])
        try:
            start_response("201 Created", [])
        except RuntimeError as e:
            errors.append(e)
        return [b"x"]

    assert reply(serve(app, get()).sent).status == 200 and len(errors) == 1


@pytest.mark.parametrize("status, headers, error", [
    (b"200 OK", [], TypeError),
    ("200", [], ValueError),
    ("200OK", [], ValueError),
    ("2000 OK", [], ValueError),
    ("100 Continue", [], ValueError),
    ("200 OK\r\nX-Evil: 1", [], ValueError),
    ("200 OK", (("A", "b"),), TypeError),
    ("200 OK", [("A", b"b")], TypeError),
    ("200 OK", [(b"A", "b")], TypeError),
    ("200 OK", [("A", "b", "c")], TypeError),
    ("200 OK", [("A", "b\r\nX-Evil: 1")], ValueError),
    ("200 OK", [("A", "b\nc")], ValueError),
    ("200 OK", [("A B", "c")], ValueError),
    ("200 OK", [("A:", "c")], ValueError),
    ("200 OK", [("A", "\u20ac")], ValueError),
    ("200 OK", [("Content-Length", "ten")], ValueError),
])
def test_start_response_refuses_what_pep3333_and_http_forbid(status, headers, error):
    got = []

    def app(env, start_response):
        try:
            start_response(status, headers)
        except Exception as e:
            got.append(e)
            raise

    assert reply(serve(app, get()).sent).status == 500
    assert len(got) == 1 and isinstance(got[0], error)


def test_body_chunks_must_be_bytes():
    def app(env, start_response):
        start_response("200 OK", [])
        return ["text"]

    assert reply(serve(app, get()).sent).status == 500


def test_returning_without_start_response_is_a_500(caplog):
    def app(env, start_response):
        return [b"x"]

    with caplog.at_level(logging.ERROR, logger="dhaga.web"):
        assert reply(serve(app, get()).sent).status == 500
    assert "start_response" in caplog.text


def test_an_application_error_is_a_500_and_is_logged(caplog):
    def app(env, start_response):
        raise ZeroDivisionError("sorry")

    with caplog.at_level(logging.ERROR, logger="dhaga.web"):
        r = reply(serve(app, get("boom") + get("next")).sent)
    assert r.status == 500 and r.headers["Connection"] == "close"
    assert "ZeroDivisionError" in caplog.text and "/boom" in caplog.text


def test_close_is_called_on_the_result_even_when_the_client_is_gone():
    closed = []

    class Body:
        def __iter__(self):
            return iter([b"a", b"b"])

        def close(self):
            closed.append(True)

    def app(env, start_response):
        start_response("200 OK", [])
        return Body()

    class Broken(FakeSocket):
        def sendall(self, data):
            raise BrokenPipeError(32, "Broken pipe")

    sock = Broken(get())
    wsgi.WSGIHandler(app)(sock, ("1.2.3.4", 1))
    assert closed == [True]


def test_hop_by_hop_headers_are_dropped_and_connection_close_honoured():
    def app(env, start_response):
        start_response("200 OK", [("Connection", "close"), ("Keep-Alive", "timeout=5"),
                                  ("Transfer-Encoding", "chunked"), ("X-Kept", "1")])
        return [b"x"]

    sock = serve(app, get("a") + get("b"))
    r = reply(sock.sent)  # only one reply: the connection closed
    assert r.headers["Connection"] == "close" and r.headers["X-Kept"] == "1"
    assert "Keep-Alive" not in r.headers and "Transfer-Encoding" not in r.headers


def test_content_length_is_enforced_both_ways(caplog):
    def longer(env, start_response):
        start_response("200 OK", [("Content-Length", "3")])
        return iter([b"ab", b"cdef"])

    sock = serve(longer, get() + get())
    r = reply(sock.sent)  # one reply only: the connection closed after it
    assert r.body == b"abc"

    def shorter(env, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        return iter([b"abc"])

    sock = serve(shorter, get() + get())
    assert sock.sent.endswith(b"\r\n\r\nabc")  # and then the connection closed
    assert sock.sent.count(b"HTTP/1.1") == 1


def test_head_requests_get_no_body_but_their_length():
    head = b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n"
    sock = serve(hello, head + get("y"))
    r1, r2 = replies(sock.sent, "HEAD", "GET")
    assert r1.body == b"" and r1.headers["Content-Length"] == "8"
    assert r2.body == b"hello /y"


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses_send_no_body(status):
    def app(env, start_response):
        start_response(status, [])
        return [b"dropped"]

    sock = serve(app, get() + get())
    r1, r2 = replies(sock.sent, "GET", "GET")
    assert r1.body == b"" and r2.body == b""
    assert "Content-Length" not in r1.headers and "Transfer-Encoding" not in r1.headers


# ---------------------------------------------------------------------- keep-alive
def test_pipelined_requests_are_answered_in_order_on_one_connection():
    sock = serve(hello, get("one") + get("two") + get("three"))
    assert [r.body for r in replies(sock.sent, count=3)] == [b"hello /one", b"hello /two",
                                                             b"hello /three"]


def test_a_head_arriving_byte_by_byte():
    data = get("slow") + get("fast")
    sock = serve(hello, *[data[i:i + 1] for i in range(len(data))])
    assert [r.body for r in replies(sock.sent, count=2)] == [b"hello /slow", b"hello /fast"]


def test_empty_lines_before_a_request_are_ignored():
    sock = serve(hello, b"\r\n\r\n" + get("a") + b"\r\n" + get("b"))
    assert [r.body for r in replies(sock.sent, count=2)] == [b"hello /a", b"hello /b"]


def test_http10_closes_unless_asked_to_keep_alive():
    sock = serve(hello, b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
    r = reply(sock.sent)
    assert r.body == b"hello /a" and r.headers["Connection"] == "close"
    ka = b"GET /%s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    sock = serve(hello, ka % b"a" + ka % b"b")
    r1, r2 = replies(sock.sent, count=2)
    assert r1.headers["Connection"] == "keep-alive" and r2.body == b"hello /b"


def test_connection_close_ends_after_the_response():
    sock = serve(hello, get("a", b"Connection: close\r\n") + get("b"))
    assert reply(sock.sent).headers["Connection"] == "close"


# ---------------------------------------------------------------------- bodies
def echo(env, start_response):
    inp = env["wsgi.input"]
    mode = env.get("HTTP_X_MODE", "read")
    if mode == "read":
        body = inp.read()
    elif mode == "pieces":
        parts = []
        while True:
            piece = inp.read(3)
            if not piece:
                break
            parts.append(piece)
        body = b"|".join(parts)
    elif mode == "lines":
        body = b"|".join(inp)
    else:
        body = b""
    start_response("200 OK", [])
    return [body]


def post(body: bytes, extra: bytes = b"", chunked: bool = False) -> bytes:
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % len(body)
    return b"POST / HTTP/1.1\r\nHost: t\r\n" + framing + extra + b"\r\n" + body


def test_bodies_with_a_length_in_every_reading_style():
    for mode, expect in [(b"read", b"abcdefg"), (b"pieces", b"abc|def|g"),
                         (b"lines", b"ab\n|cd\n|efg")]:
        data = b"abcdefg" if mode != b"lines" else b"ab\ncd\nefg"
        sock = serve(echo, post(data, b"X-Mode: " + mode + b"\r\n") + get("after"))
        r1, r2 = replies(sock.sent, count=2)
        assert r1.body == expect, mode
        assert r2.status == 200


def test_a_body_split_across_reads():
    sock = serve(echo, post(b"0123456789")[:-7], b"345", b"6789" + get("x"))
    r1, r2 = replies(sock.sent, count=2)
    assert r1.body == b"0123456789" and r2.body == b""


def test_chunked_request_bodies_are_decoded():
    wire = b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n"
    for split in (len(wire), 5, 1):
        pieces = [wire[i:i + split] for i in range(0, len(wire), split)]
        head = post(b"", b"X-Mode: pieces\r\n", chunked=True)
        sock = serve(echo, head, *pieces, get("after"))
        r1, r2 = replies(sock.sent, count=2)
        assert r1.body == b"abc|def|g", split
        assert r2.status == 200


def test_streamed_responses_are_chunked_for_http11_and_close_delimited_for_http10():
    def stream(env, start_response):
        write = start_response("200 OK", [])
        write(b"first ")
        return (part for part in [b"second ", b"", b"third"])

    sock = serve(stream, get("a") + get("b"))
    r1, r2 = replies(sock.sent, count=2)
    assert r1.headers["Transfer-Encoding"] == "chunked" and r1.body == b"first second third"
    assert r2.body == r1.body
    assert b"\r\n6\r\nfirst \r\n" in sock.sent and sock.sent.endswith(b"0\r\n\r\n")

    sock = serve(stream, b"GET / HTTP/1.0\r\n\r\n")
    r = reply(sock.sent)
    assert "Transfer-Encoding" not in r.headers and r.headers["Connection"] == "close"
    assert r.body == b"first second third"


def test_an_empty_streamed_response_gets_a_zero_length():
    def empty(env, start_response):
        start_response("200 OK", [])
        return iter([])

    r1, r2 = replies(serve(empty, get() + get()).sent, count=2)
    assert r1.headers["Content-Length"] == "0" and r1.body == b""


def test_unread_small_bodies_are_skipped_and_large_ones_close():
    sock = serve(hello, post(b"x" * 1000) + get("next"))
    r1, r2 = replies(sock.sent, count=2)
    assert r2.body == b"hello /next"
    big = post(b"x" * 100_000)
    sock = serve(hello, big[:200], big[200:] + get("next"))
    r = reply(sock.sent)
    assert r.headers["Connection"] == "close"


def test_a_client_that_drops_mid_body_is_not_answered_as_a_full_body():
    got = []

    def app(env, start_response):
        try:
            env["wsgi.input"].read()
        except ConnectionError as e:
            got.append(e)
            raise
        start_response("200 OK", [])
        return [b"unreachable"]

    serve(app, post(b"0123456789")[:-5])
    assert len(got) == 1


# ---------------------------------------------------------------------- 100-continue
def test_100_continue_is_sent_on_the_first_read_only():
    body = b"the body"
    head = post(b"", b"Expect: 100-continue\r\n").replace(
        b"Content-Length: 0", b"Content-Length: %d" % len(body))
    sock = serve(echo, head, body + get("next"))
    i_continue = sock.events.index(("send", b"HTTP/1.1 100 Continue\r\n\r\n"))
    i_body = next(i for i, (k, d) in enumerate(sock.events) if k == "recv" and d.startswith(body))
    assert i_continue < i_body
    r1, r2 = replies(sock.sent, count=2)  # http.client skips the interim response
    assert r1.body == body and r2.status == 200
    assert sock.sent.count(b"100 Continue") == 1


def test_no_100_continue_when_the_body_is_never_read():
    head = post(b"", b"Expect: 100-continue\r\n").replace(b"Content-Length: 0", b"Content-Length: 5")
    sock = serve(hello, head, b"hello" + get("x"))
    assert b"100 Continue" not in sock.sent
    r = reply(sock.sent)
    assert r.status == 200 and r.headers["Connection"] == "close"


def test_no_100_continue_when_the_body_came_anyway():
    sock = serve(echo, post(b"early", b"Expect: 100-continue\r\n"))
    assert b"100 Continue" not in sock.sent and reply(sock.sent).body == b"early"


# ---------------------------------------------------------------------- limits
@pytest.mark.parametrize("data, status", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET /" + b"a" * 9000, 414),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"b" * 70_000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X: 1\r\n" * 101 + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000000\r\n\r\n", 413),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: br\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET\tfoo\r\n\r\n", 400),
])
def test_requests_over_the_limits_get_the_right_status(data, status):
    called = []

    def app(env, start_response):
        called.append(1)
        return hello(env, start_response)

    sock = serve(app, data)
    r = reply(sock.sent)
    assert r.status == status and r.headers["Connection"] == "close"
    assert not called


def test_configured_limits_apply():
    limits = Limits(max_request_line=100, max_header_size=200, max_headers=5, max_body_size=10)
    assert reply(serve(hello, get("a" * 100), limits=limits).sent).status == 414
    assert reply(serve(echo, post(b"x" * 11), limits=limits).sent).status == 413
    ok = serve(echo, post(b"x" * 10), limits=limits)
    assert reply(ok.sent).body == b"x" * 10


def test_a_chunked_body_over_the_limit_is_413_when_read():
    limits = Limits(max_body_size=10)
    wire = b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
    sock = serve(echo, post(b"", chunked=True) + wire + get("x"), limits=limits)
    r = reply(sock.sent)
    assert r.status == 413 and r.headers["Connection"] == "close"


def test_a_malformed_chunked_body_is_400_when_read():
    sock = serve(echo, post(b"", chunked=True) + b"zz\r\nabc\r\n0\r\n\r\n")
    assert reply(sock.sent).status == 400


def test_a_head_too_slow_gets_408():
    sock = serve(hello, b"GET / HTTP/1.1\r\n", TimeoutError("timed out"))
    assert reply(sock.sent).status == 408


def test_the_reaper_answers_a_slow_head_with_408():
    handler = wsgi.WSGIHandler(hello, header_timeout=5)
    reaped = []

    def stall(sock):
        now = time.monotonic()
        reaped.append(handler.reap(now + 1))  # not due yet
        reaped.append(handler.reap(now + 6))  # past header_timeout: the reading side shuts
        assert sock.shut
        return b""  # what recv returns once the reading side is shut down

    sock = FakeSocket(b"GET / HTTP/1.1\r\nHo", stall)
    handler(sock, ("1.2.3.4", 1))
    assert reaped == [0, 1]
    assert reply(sock.sent).status == 408


def test_the_reaper_closes_idle_keep_alive_connections_quietly():
    handler = wsgi.WSGIHandler(hello, keepalive_timeout=30, header_timeout=5)
    reaped = []

    def idle(sock):
        now = time.monotonic()
        reaped.append(handler.reap(now + 20))  # past header_timeout, not keepalive_timeout
        reaped.append(handler.reap(now + 31))
        return b""

    sock = FakeSocket(get("a"), idle)
    handler(sock, ("1.2.3.4", 1))
    assert reaped == [0, 1]
    assert reply(sock.sent).body == b"hello /a"  # and nothing more: closed without a reply


def test_the_reaper_ends_a_stalled_body_with_408():
    handler = wsgi.WSGIHandler(echo, timeout=7)

    def stall(sock):
        assert handler.reap(time.monotonic() + 8) == 1
        return b""

    sock = FakeSocket(post(b"0123456789")[:-5], stall)
    handler(sock, ("1.2.3.4", 1))
    assert reply(sock.sent).status == 408


# ---------------------------------------------------------------------- access log
def test_the_access_log(caplog):
    with caplog.at_level(logging.INFO, logger="dhaga.web.access"):
        serve(hello, get("logged"))
    [rec] = [r for r in caplog.records if r.name == "dhaga.web.access"]
    assert '"GET /logged HTTP/1.1" 200 13' in rec.getMessage()
    assert rec.status == 200 and rec.remote_addr == "10.1.2.3"


def test_no_access_log_work_while_it_is_disabled(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("formatted an access log line while the log is disabled")

    monkeypatch.setattr(wsgi._Connection, "_log_access", fail)
    logging.getLogger("dhaga.web.access").setLevel(logging.WARNING)
    try:
        assert reply(serve(hello, get("quiet")).sent).status == 200
    finally:
        logging.getLogger("dhaga.web.access").setLevel(logging.NOTSET)


def test_the_access_log_follows_levels_changed_while_a_connection_is_open(caplog):
    """The request loop reads the logger's answer cache: a level change must reach it."""
    log = logging.getLogger("dhaga.web.access")

    def app(env, start_response):
        path = env["PATH_INFO"]
        if path == "/on":
            log.setLevel(logging.INFO)
        elif path == "/off":
            log.setLevel(logging.WARNING)
        start_response("200 OK", [])
        return [b"x"]

    log.setLevel(logging.WARNING)
    try:
        serve(app, get("quiet") + get("on") + get("logged") + get("off") + get("quiet-again"))
    finally:
        log.setLevel(logging.NOTSET)
    paths = [r.getMessage().split('"')[1] for r in caplog.records if r.name == log.name]
    assert paths == ["GET /logged HTTP/1.1"]  # /off: timed, but the line is not written


# ---------------------------------------------------------------------- RFC 9112 edge cases
def test_two_equal_content_lengths_reach_the_app_as_one_value():
    def app(env, start_response):
        start_response("200 OK", [])
        return [env["CONTENT_LENGTH"].encode(), b":", env["wsgi.input"].read()]

    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
    assert reply(serve(app, head).sent).body == b"3:abc"


def test_different_content_lengths_are_refused_with_400():
    seen: list = []
    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    sock = serve(record_environ(seen), head)
    assert reply(sock.sent).status == 400 and seen == []


def test_absolute_form_host_wins_and_unknown_schemes_are_refused():
    seen: list = []
    sock = serve(record_environ(seen),
                 b"GET http://good.example/p HTTP/1.1\r\nHost: evil.example\r\n\r\n"
                 b"GET ftp://good.example/p HTTP/1.1\r\nHost: good.example\r\n\r\n")
    first, second = replies(sock.sent, count=2)
    assert first.status == 200 and second.status == 400
    assert seen[0]["HTTP_HOST"] == "good.example" and seen[0]["PATH_INFO"] == "/p"
    assert len(seen) == 1


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\nHost: t\n\n",                       # bare LFs
    bytes.fromhex("16030100f4010000f00303") + bytes(32),  # a TLS ClientHello
    b"\x00\xff\x13\x37 binary",
])
def test_a_hopeless_head_gets_400_without_waiting_for_more(garbage):
    def never(sock):
        raise AssertionError("the server waited for more bytes of a hopeless head")

    sock = serve(hello, garbage, never)
    assert reply(sock.sent).status == 400


def trickle(handler, monkeypatch, body, every):
    """Send ``body`` a byte at a time, ``every`` seconds apart on a fake clock; reap each time.

    Returns the socket and how many operations each reap ended.
    """
    clock = [1000.0]
    monkeypatch.setattr(wsgi, "monotonic", lambda: clock[0])
    reaped = []

    def byte(b):
        def step(sock):
            clock[0] += every
            reaped.append(handler.reap(clock[0]))
            return b""if sock.shut else b
        return step

    sock = FakeSocket(post(body)[:-len(body)], *[byte(body[i:i + 1]) for i in range(len(body))])
    handler(sock, ("1.2.3.4", 1))
    return sock, reaped


def test_the_body_has_a_total_deadline_even_when_every_read_is_quick(monkeypatch):
    # a byte every 2 s: each read is well within `timeout`, the whole body is not within 5 s
    handler = wsgi.WSGIHandler(echo, timeout=7, body_timeout=5)
    sock, reaped = trickle(handler, monkeypatch, b"0123456789", every=2)
    assert reaped == [0, 0, 1]
    assert reply(sock.sent).status == 408


def test_no_total_body_deadline_when_it_is_none(monkeypatch):
    handler = wsgi.WSGIHandler(echo, timeout=7, body_timeout=None)
    sock, reaped = trickle(handler, monkeypatch, b"0123456789", every=2)
    assert reaped == [0] * 10
    assert reply(sock.sent).body == b"0123456789"


def test_the_default_body_deadline_is_documented_and_finite():
    assert wsgi.DEFAULT_BODY_TIMEOUT == 120.0
    assert wsgi.WSGIHandler(echo).body_timeout == wsgi.DEFAULT_BODY_TIMEOUT
