"""dhaga.web.environ: a parsed head to a WSGI environ, by tables of heads and expected keys."""

from __future__ import annotations

import pytest

from dhaga.web.environ import environ_for, split_target
from dhaga.web.protocol import RequestError, parse_head

BASE = {"wsgi.url_scheme": "http", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
        "SCRIPT_NAME": ""}


def env_of(head: bytes, base=None) -> dict:
    return environ_for(parse_head(head), dict(BASE if base is None else base))


@pytest.mark.parametrize("head, expected", [
    (b"GET / HTTP/1.1\r\nHost: h",
     {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "", "RAW_URI": "/",
      "REQUEST_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "h"}),
    (b"HEAD /a%20b/c%2Fd?x=%41&y HTTP/1.0",
     {"REQUEST_METHOD": "HEAD", "PATH_INFO": "/a b/c/d", "QUERY_STRING": "x=%41&y",
      "RAW_URI": "/a%20b/c%2Fd?x=%41&y", "SERVER_PROTOCOL": "HTTP/1.0"}),
    (b"GET /caf%C3%A9 HTTP/1.1\r\nHost: h",
     {"PATH_INFO": "/caf\xc3\xa9"}),                       # bytes as latin-1 (PEP 3333)
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 3",
     {"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "3"}),
    # two equal Content-Length fields, or one listing it twice: one value (as h11)
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5",
     {"CONTENT_LENGTH": "5"}),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5",
     {"CONTENT_LENGTH": "5"}),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007",
     {"CONTENT_LENGTH": "7"}),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=1\r\nCookie: b=2",
     {"HTTP_X_A": "1,2", "HTTP_COOKIE": "a=1; b=2"}),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-Caf: \xe9t\xe9", {"HTTP_X_CAF": "\xe9t\xe9"}),
    # absolute form: the host comes from the target, not from the Host field (RFC 9112 3.2.2)
    (b"GET http://example.org/p/q?z=1 HTTP/1.1\r\nHost: evil.example",
     {"HTTP_HOST": "example.org", "PATH_INFO": "/p/q", "QUERY_STRING": "z=1",
      "RAW_URI": "http://example.org/p/q?z=1"}),
    (b"GET HTTPS://example.org:8443 HTTP/1.1\r\nHost: x",
     {"HTTP_HOST": "example.org:8443", "PATH_INFO": "/", "QUERY_STRING": ""}),
    (b"GET http://[::1]:81?a=b HTTP/1.1\r\nHost: x",
     {"HTTP_HOST": "[::1]:81", "PATH_INFO": "/", "QUERY_STRING": "a=b"}),
    (b"OPTIONS * HTTP/1.1\r\nHost: h", {"PATH_INFO": "*", "HTTP_HOST": "h"}),
])
def test_environ_keys(head, expected):
    env = env_of(head)
    for key, value in expected.items():
        assert env[key] == value, key
    for key, value in env.items():
        assert type(key) is str and (type(value) is str or not key.isupper()), key


@pytest.mark.parametrize("head, absent", [
    (b"GET / HTTP/1.1\r\nHost: h", ("CONTENT_LENGTH", "CONTENT_TYPE", "wsgi.input")),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6", ("HTTP_X_FORWARDED_FOR",)),
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Type: a", ("HTTP_CONTENT_TYPE",)),
])
def test_keys_that_must_not_be_there(head, absent):
    env = env_of(head)
    for key in absent:
        assert key not in env


@pytest.mark.parametrize("target", [
    "ftp://example.org/p",          # a scheme HTTP does not serve
    "gopher://h/",
    "javascript://x",
    "http:///p",                    # an empty host
    "http://user:pw@h/p",           # user information
    "h:443",                        # authority form (CONNECT only, not served)
    "p/q",                          # relative
    "1ttp://h/",                    # not a scheme
])
def test_targets_refused_with_400(target):
    with pytest.raises(RequestError) as e:
        env_of(f"GET {target} HTTP/1.1\r\nHost: h".encode())
    assert e.value.status == 400


def test_split_target_table():
    assert split_target("/p?q") == (None, "/p?q")
    assert split_target("*") == (None, "*")
    assert split_target("http://h") == ("h", "/")
    assert split_target("http://h?x") == ("h", "/?x")
    assert split_target("http://h:1/a/b") == ("h:1", "/a/b")


def test_base_is_copied_never_changed():
    base = dict(BASE)
    env = env_of(b"GET / HTTP/1.1\r\nHost: h", base)
    assert base == BASE and env is not base
    assert env["SERVER_NAME"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"
