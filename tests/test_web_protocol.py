"""dhaga.web.protocol: request heads and chunked bodies, tested by tables of bytes."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tornado.httputil import HTTPHeaders, HTTPInputError, parse_request_start_line

from dhaga.errors import ProtocolError
from dhaga.web.protocol import (
    ChunkedDecoder,
    Limits,
    RequestError,
    error_response,
    head_end,
    http_date,
    parse_head,
)


def status_of(fn, *args, **kw):
    with pytest.raises(RequestError) as info:
        fn(*args, **kw)
    assert isinstance(info.value, ProtocolError)
    return info.value.status


# ---------------------------------------------------------------------- heads
def test_a_simple_head():
    req = parse_head(b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-Two:  v  w \r\nX-Empty:")
    assert (req.method, req.target, req.version) == ("GET", "/a%20b?x=1", "HTTP/1.1")
    assert req.fields == [("Host", "h"), ("X-Two", "v  w"), ("X-Empty", "")]
    assert req.keep_alive and not req.chunked and req.content_length is None
    assert not req.has_body and not req.expect_continue


@pytest.mark.parametrize("head, keep_alive", [
    (b"GET / HTTP/1.1\r\nHost: h", True),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close", False),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE", False),
    (b"GET / HTTP/1.0", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive", True),
    (b"GET / HTTP/1.0\r\nConnection: Keep-Alive, foo", True),
])
def test_keep_alive_follows_version_and_connection(head, keep_alive):
    assert parse_head(head).keep_alive is keep_alive


def test_a_later_minor_version_is_served_as_1_1():
    assert parse_head(b"GET / HTTP/1.7\r\nHost: h").version == "HTTP/1.1"


@pytest.mark.parametrize("head, status", [
    (b"GET /", 400),                                         # no version
    (b"GET  / HTTP/1.1\r\nHost: h", 400),                    # two spaces
    (b"GET / HTTP/1.1 \r\nHost: h", 400),                    # trailing space
    (b"G(T / HTTP/1.1\r\nHost: h", 400),                     # method not a token
    (b"GET /a\x00b HTTP/1.1\r\nHost: h", 400),               # control char in target
    (b"GET / http/1.1\r\nHost: h", 400),                     # lower-case version
    (b"GET / HTTP/2.0\r\nHost: h", 505),
    (b"GET / HTTP/3.0", 505),
    (b"GET / HTTP/1.10\r\nHost: h", 505),
    (b"GET / HTTP/1.1", 400),                                # 1.1 needs Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400),          # two Hosts
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-A : b", 400),          # space before colon
    (b"GET / HTTP/1.1\r\nHost: h\r\n folded", 400),          # obs-fold
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\nX-B: c", 400),   # bare LF
    (b"GET / HTTP/1.1\r\nHost: h\r\nno colon", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb", 400),      # DEL in a value
    (b"GET / HTTP/1.1\r\nHost: h\r\n: empty name", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip", 501),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked", 501),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip", 501),
])
def test_malformed_heads_are_refused_with_the_right_status(head, status):
    assert status_of(parse_head, head) == status


def test_framing_facts():
    req = parse_head(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nExpect: 100-Continue")
    assert req.content_length == 5 and req.has_body and req.expect_continue
    req = parse_head(b"POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: Chunked")
    assert req.chunked and req.has_body and req.content_length is None


def test_limits_on_headers_and_body():
    limits = Limits(max_headers=3, max_body_size=10)
    ok = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2"
    assert len(parse_head(ok, limits).fields) == 3
    assert status_of(parse_head, ok + b"\r\nC: 3", limits) == 431
    body = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
    assert parse_head(body + b"10", limits).content_length == 10
    assert status_of(parse_head, body + b"11", limits) == 413


def test_head_end_finds_the_blank_line_and_enforces_sizes():
    limits = Limits(max_request_line=20, max_header_size=60)
    assert head_end(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nrest", limits) == 23
    assert head_end(b"GET / HTTP/1.1\r\nHost: h\r\n", limits) == -1
    assert head_end(b"GET / HTTP/1.1\r\nHo", limits, start=10) == -1
    # a request line past the limit, complete or not
    assert status_of(head_end, b"GET /" + b"a" * 30, limits) == 414
    assert status_of(head_end, b"GET /" + b"a" * 30 + b" HTTP/1.1\r\n\r\n", limits) == 414
    # a head past the limit, complete or not
    many = b"GET / HTTP/1.1\r\n" + b"X: 12345678\r\n" * 5
    assert status_of(head_end, many, limits) == 431
    assert status_of(head_end, many + b"\r\n", limits) == 431
    # exactly at the limits is fine
    line = b"GET /" + b"a" * 6 + b" HTTP/1.1"
    assert len(line) == 20
    assert head_end(line + b"\r\n\r\n", limits) == 20


def test_head_end_resumes_where_it_left_off():
    buf = b"GET / HTTP/1.1\r\nHost: h\r\n\r"
    assert head_end(buf) == -1
    assert head_end(buf + b"\n", start=len(buf)) == len(buf) - 3


# A TLS 1.2 ClientHello's first bytes (record type 0x16, version 3.1, length, handshake type 1).
_CLIENT_HELLO = bytes.fromhex("160301020001" "0001fc0303") + bytes(range(32))


@pytest.mark.parametrize("partial", [
    b"GET / HTTP/1.1\nHost: h\n",                 # bare LFs: would never see CRLF CRLF
    b"GET / HTTP/1.1\nHost: h\n\n",
    b"GET / HTTP/1.1\r\nHost: h\n",              # a bare LF after a good request line
    b"GET / HTTP/1.1\r\nHost: h\r\nX: 1\n\r\n",
    b"GET / HT\rTP",                              # a bare CR in the request line
    _CLIENT_HELLO,                                 # TLS spoken to a plain HTTP port
    b"\x16\x03\x01",                               # ... even its first three bytes
    b"\x00\x01\x02\xff\xfe",                        # binary
    b"\xef\xbb\xbfGET / HTTP/1.1",                 # a byte-order mark
    b"GET /a\x00b",                                # a control character in the target
    b"(GET / HTTP/1.1",                            # not a method
    b"GET / HTTP/1.1 extra",                       # a fourth part
])
def test_a_head_that_can_never_be_valid_is_refused_before_it_ends(partial):
    assert status_of(head_end, partial) == 400


@pytest.mark.parametrize("partial", [
    b"G", b"GET", b"GET ", b"GET /", b"GET /a?b=c ", b"GET / HTTP/1.", b"GET / HTTP/1.1\r",
    b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: h\r\n\r",
    b"GET / HTTP/1.1\r\nX: \x00 is for parse_head",   # fields are checked when complete
    b"GET http://h/p HTTP/1.1\r\nHost: h",
])
def test_a_head_that_may_still_be_valid_waits_for_more(partial):
    assert head_end(partial) == -1


def test_the_early_check_looks_only_at_new_bytes():
    good = b"GET / HTTP/1.1\r\nHost: h\r\n"
    assert head_end(good + b"X: 1", start=len(good)) == -1
    assert status_of(head_end, good + b"X: 1\n", start=len(good)) == 400


def test_equal_content_lengths_collapse_and_different_ones_are_refused():
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5"
    assert parse_head(head).content_length == 5
    assert status_of(parse_head, head[:-1] + b"6") == 400


# ---------------------------------------------------------------------- against Tornado
_token = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)
_ugly = st.text(alphabet=st.sampled_from(list(" \t:;,/=\x00\x01\x7f\x80\xff\r\n\"aZ9")), max_size=12)
_value = st.one_of(_ugly, st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=12))


def tornado_accepts(head: str) -> tuple | None:
    """What Tornado's HTTP/1 parser makes of a head; None when it refuses it."""
    line, _, rest = head.partition("\r\n")
    try:
        start = parse_request_start_line(line)
        headers = HTTPHeaders.parse(rest)
    except HTTPInputError:
        return None
    return start.method, start.path, sorted(headers.get_all())


@settings(max_examples=400, deadline=None)
@given(st.one_of(_token, _ugly), st.one_of(st.just("/p?q=1"), _ugly),
       st.lists(st.tuples(st.one_of(_token, _ugly), _value), max_size=4))
@example("GET", "/", [("X-A", "1"), ("x-a", "2")])
@example("GET", "/", [("X-A", " spaced\tvalue \t")])
@example("0", "/p?q=1", [("0", ""), ("\t", "")])  # an obsolete line fold (found by Hypothesis)
def test_the_head_parser_agrees_with_tornados(method, target, fields):
    """Whatever Tornado's parser accepts, ours accepts with the same meaning, and vice versa.

    (Tornado still allows a bare LF as a line end; both refuse everything else it refuses.)
    """
    lines = [f"{method} {target} HTTP/1.0"] + [f"{n}: {v}" for n, v in fields]
    head = "\r\n".join(lines)
    if "\n" in head.replace("\r\n", "") or "\r" in head.replace("\r\n", ""):
        return  # a bare CR/LF: a line end to Tornado, a bad byte to us (stricter on purpose)
    if any(n[:1] in (" ", "\t") for n, _ in fields):
        # A field line that starts with a space or tab is an obsolete line fold: Tornado joins
        # it to the field before; we refuse it (RFC 9112 5.2 allows either; docs/web.md).
        with pytest.raises(RequestError):
            parse_head(head.encode("latin-1"))
        return
    theirs = tornado_accepts(head)
    try:
        req = parse_head(head.encode("latin-1"))
    except RequestError as e:
        assert theirs is None or e.status != 400, (head, theirs)
        return
    assert theirs is not None, head
    name_case = {n.lower(): n for n, _ in req.fields}
    ours = sorted((n.lower(), v) for n, v in req.fields)
    assert (req.method, req.target) == theirs[:2]
    assert ours == sorted((n.lower(), v) for n, v in theirs[2]), name_case


# ---------------------------------------------------------------------- chunked bodies
def decode_all(pieces, limits=None):
    d = ChunkedDecoder(limits or Limits())
    out = b"".join(d.feed(p) for p in pieces)
    return out, d


@pytest.mark.parametrize("wire, payload", [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"a\r\n0123456789\r\n000\r\n\r\n", b"0123456789"),
    (b"3;name=value\r\nabc\r\n0\r\n\r\n", b"abc"),
    (b'3 ; n = "q\\"x" ; m\r\nabc\r\n0\r\n\r\n', b"abc"),
    (b"0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n", b""),
])
def test_chunked_decoding(wire, payload):
    out, d = decode_all([wire])
    assert out == payload and d.done and d.leftover == b""
    # the same bytes one at a time
    out, d = decode_all([wire[i:i + 1] for i in range(len(wire))])
    assert out == payload and d.done and d.leftover == b""


def test_bytes_after_the_body_are_left_over():
    out, d = decode_all([b"2\r\nab\r\n0\r\n\r\nGET / HTTP/1.1\r\n", b"more"])
    assert out == b"ab" and d.done
    assert d.leftover == b"GET / HTTP/1.1\r\nmore"


@pytest.mark.parametrize("wire", [
    b"x\r\n",                        # not hex
    b"-1\r\n",                       # signed
    b"0x5\r\nhello\r\n",             # a prefix
    b" 5\r\nhello\r\n",              # leading space
    b"5 \r\nhello\r\n",              # trailing space without an extension
    b"5;\r\nhello\r\n",              # an empty extension
    b"5\nhello\r\n",                 # bare LF
    b"5\r\nhelloXX0\r\n\r\n",        # data not followed by CRLF
    b"5\r\nhello\n0\r\n\r\n",
    b"11111111111111111\r\n",        # 17 hex digits
    b"0\r\nbad trailer\r\n\r\n",
])
def test_malformed_chunked_bodies_are_400(wire):
    with pytest.raises(RequestError) as info:
        decode_all([wire])
    assert info.value.status == 400
    with pytest.raises(RequestError) as info:
        decode_all([wire[i:i + 1] for i in range(len(wire))])
    assert info.value.status == 400


def test_chunked_limits():
    with pytest.raises(RequestError) as info:
        decode_all([b"6\r\n123456\r\n5\r\n12345\r\n0\r\n\r\n"], Limits(max_body_size=10))
    assert info.value.status == 413
    with pytest.raises(RequestError) as info:  # an announced size is enough to refuse
        decode_all([b"ffffffff\r\n"], Limits(max_body_size=10))
    assert info.value.status == 413
    with pytest.raises(RequestError) as info:
        decode_all([b"0\r\n" + b"T: 1\r\n" * 5 + b"\r\n"], Limits(max_headers=4))
    assert info.value.status == 431
    with pytest.raises(RequestError) as info:  # a size line that never ends
        decode_all([b"1" * 10 + b";x=" + b"y" * 9000], Limits())
    assert info.value.status == 400


# ---------------------------------------------------------------------- responses
def test_http_date_and_error_responses():
    assert http_date().endswith(" GMT") and len(http_date()) == 29
    data = error_response(413, "too big")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n") or head.startswith(
        b"HTTP/1.1 413 Content Too Large\r\n")
    assert b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
