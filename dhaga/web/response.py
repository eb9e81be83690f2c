"""One WSGI response: ``start_response``, ``write``, and framing the body on the wire.

The rules are PEP 3333's: ``start_response`` takes a native-string status like ``"200 OK"`` and
a list of ``(name, value)`` native-string pairs, may be called again only with ``exc_info``
(and then re-raises it if the head has gone out), and returns ``write``. The head is sent with
the first non-empty body bytes (or at the end, for an empty body); the body must be bytes.
Hop-by-hop headers belong to the server: the application's are dropped, except that
``Connection: close`` is honoured. A body longer than the ``Content-Length`` the application
gave is cut to it; a shorter one closes the connection after the response, so that the client
never waits for bytes that will not come.

This module must not know about sockets, connections or request parsing: it is given a
``send`` function, a ``stopping`` object (its ``closing`` turns true when a graceful stop
begins: the connection then closes after the response), and what the request line decided
(method, version, keep-alive).
"""

from __future__ import annotations

import logging
import re
from time import time as _time
from typing import Any, Callable, Iterable

from ..errors import DhagaError
from .protocol import DATE, LAST_CHUNK, http_date

__all__ = ["Response", "ResponseError"]

log = logging.getLogger("dhaga.web")

_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_STATUS = re.compile(r"([2-9][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*")
_HEADER_BLOCK = re.compile(rf"(?:{_TCHAR}+: [\t\x20-\x7e\x80-\xff]*\r\n)*")
_DIGITS = re.compile(r"[0-9]{1,18}")
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailer", "trailers", "transfer-encoding", "upgrade"))
_SPECIAL = _HOP_BY_HOP | {"content-length", "date"}
_NO_BODY = frozenset((204, 304))

_lower_cache: dict[str, str] = {}


class ResponseError(DhagaError, RuntimeError):
    """The application broke a rule of PEP 3333 in a way only seen after it returned."""


def _check_chunk(data: Any) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"a WSGI response body must be bytes, not {type(data).__name__} "
                        f"(encode text before returning it)")


class Response:
    """The response to one request: what ``start_response`` set, and what was sent.

    Args:
        send: sends bytes to the client (all of them, or raises).
        stopping: an object whose ``closing`` is true once the server is stopping gracefully.
        memo: a list the connection keeps across its responses: the last status and headers
            checked, with what was derived from them, so that an application answering with
            the same ones again is not checked again.
        is_head: the request was ``HEAD``: no body is sent.
        version: the request's HTTP version; an HTTP/1.0 client gets no chunked framing.
        keep_alive: the connection may stay open after this response (it can only go down).
    """

    __slots__ = ("send", "stopping", "memo", "is_head", "sends_body", "version", "keep_alive",
                 "status", "status_code", "header_text", "length", "has_date", "head_sent",
                 "chunked", "body_sent", "bytes_sent", "unread_body", "heads")

    def __init__(self, send: Callable[[bytes], Any], stopping: Any, is_head: bool,
                 version: str, keep_alive: bool, memo: list | None = None) -> None:
        self.begin(send, stopping, is_head, version, keep_alive, memo)

    def begin(self, send: Callable[[bytes], Any], stopping: Any, is_head: bool,
              version: str, keep_alive: bool, memo: list | None) -> None:
        """What ``__init__`` does, for a response made with ``object.__new__(Response)``: the
        server's request loop does that, as a method call from Python is cheaper than a class
        call, which enters ``__init__`` through C."""
        self.send = send
        self.stopping = stopping
        self.memo = memo
        self.is_head = is_head
        self.sends_body = not is_head
        self.version = version
        self.keep_alive = keep_alive
        self.status: str | None = None
        self.status_code = 0
        self.header_text = ""
        self.length: int | None = None
        self.has_date = False
        self.head_sent = False
        self.chunked = False
        self.body_sent = 0
        self.bytes_sent = 0
        #: The request body, when the application may leave part of it unread.
        self.unread_body: Any = None
        #: The encoded heads sent with this status and headers (kept in the memo), or None.
        self.heads: dict | None = None

    # ------------------------------------------------------------------ PEP 3333
    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        """The ``start_response`` callable given to the application.

        Raises:
            TypeError: the status or a header name or value is not a ``str``, or the headers
                are not a list of pairs.
            ValueError: the status is not ``"NNN reason"`` with NNN >= 200, or a header name
                or value holds characters HTTP does not allow (CR, LF, non-Latin-1...).
            RuntimeError: called a second time without ``exc_info``.
        """
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise RuntimeError("start_response() was already called for this response "
                               "(call it again only with exc_info)")
        if type(status) is not str:
            raise TypeError(f"the status must be a str, not {type(status).__name__}")
        memo = self.memo
        if memo and type(headers) is list and status == memo[0] and headers == memo[1]:
            _, _, code, self.header_text, self.length, self.has_date, close, self.heads = memo
            if close:
                self.keep_alive = False
            self.status = status
            self.status_code = code
            self.sends_body = not self.is_head and code not in _NO_BODY
            return self.write
        m = _STATUS.fullmatch(status)
        if m is None:
            raise ValueError(f"malformed status {status!r}: expected like '200 OK' (code >= 200)")
        if type(headers) is not list:
            raise TypeError(f"the response headers must be a list, not {type(headers).__name__}")
        length = None
        has_date = False
        close = False
        lines = []
        for item in headers:
            try:
                name, value = item
            except (TypeError, ValueError):
                raise TypeError(f"a response header must be a (name, value) pair, not {item!r}") from None
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"response header names and values must be str: {item!r}")
            low = _lower_cache.get(name)
            if low is None:
                low = name.lower()
                if len(_lower_cache) < 1024:
                    _lower_cache[name] = low
            if low in _SPECIAL:
                if low == "content-length":
                    if not _DIGITS.fullmatch(value):
                        raise ValueError(f"invalid Content-Length {value!r}")
                    if length is not None:
                        if int(value) != length:
                            raise ValueError(f"conflicting Content-Length {value!r}")
                        continue
                    length = int(value)
                elif low == "date":
                    has_date = True
                else:
                    if low == "connection" and "close" in value.lower():
                        self.keep_alive = False
                        close = True
                    continue  # hop-by-hop: the server's business
            lines.append(f"{name}: {value}\r\n")
        text = "".join(lines)
        if _HEADER_BLOCK.fullmatch(text) is None or text.count("\n") != len(lines):
            for name, value in headers:
                line = f"{name}: {value}\r\n"
                if _HEADER_BLOCK.fullmatch(line) is None or line.count("\n") != 1:
                    raise ValueError(f"invalid response header {name!r}: {value!r} "
                                     "(control characters, or not Latin-1)")
        self.status = status
        self.status_code = code = int(m.group(1))
        self.header_text = text
        self.length = length
        self.has_date = has_date
        self.sends_body = not self.is_head and code not in _NO_BODY
        if memo is not None:
            # tuples of str only: a pair the application could change later never matches
            self.heads = heads = {}
            memo[:] = (status, [tuple(h) for h in headers], code, text, length, has_date, close,
                       heads)
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable: send ``data`` now (the head first, if not sent yet)."""
        if self.status is None:
            raise RuntimeError("write() was called before start_response()")
        if type(data) is not bytes:
            _check_chunk(data)
        if not data:
            return
        n = len(data)
        if self.length is not None:
            room = self.length - self.body_sent
            if n > room:
                log.warning("the application sent more than its Content-Length (%d): cut",
                            self.length)
                data = data[:room]
                n = room
                self.keep_alive = False
        if not self.head_sent:
            out = self._head(None)
            if self.sends_body and n:
                out += (b"%x\r\n%b\r\n" % (n, data)) if self.chunked else data
        elif not self.sends_body or not n:
            return
        else:
            out = (b"%x\r\n%b\r\n" % (n, data)) if self.chunked else data
        if self.sends_body:
            self.body_sent += n
        self.bytes_sent += len(out)
        self.send(out)

    # ------------------------------------------------------------------ sending
    def _head(self, body_length: int | None) -> bytes:
        """The response head; decides the framing. ``body_length``: the whole body's size.

        A response with the status and headers of the connection's previous one reuses its
        encoded head when the rest of what the head depends on is the same too (the body's
        length, keep-alive, the request's version and method, the ``Date`` second).
        """
        keep = self.keep_alive
        if keep:
            unread = self.unread_body
            if self.stopping.closing or unread is not None and unread.must_close():
                keep = self.keep_alive = False
        if self.has_date:
            date = ""
        else:  # http_date(), without the call while its second lasts
            date = DATE[1] if _time() < DATE[0] else http_date()
        heads = self.heads
        if heads is not None:
            key = (body_length, keep, self.version, self.is_head)
            hit = heads.get(key)
            if hit is not None and hit[0] is date:  # http_date() gives one str per second
                self.head_sent = True
                if hit[2]:
                    self.chunked = True
                if not hit[3]:
                    self.keep_alive = False
                return hit[1]
        parts = ["HTTP/1.1 ", self.status, "\r\n", self.header_text]  # type: ignore[list-item]
        if date:
            parts.append(f"Date: {date}\r\n")
        code = self.status_code
        if code not in _NO_BODY and self.length is None:
            if body_length is not None:
                parts.append(f"Content-Length: {body_length}\r\n")
            elif self.is_head:
                pass
            elif self.version == "HTTP/1.1":
                self.chunked = True
                parts.append("Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        if not self.keep_alive:
            parts.append("Connection: close\r\n\r\n")
        elif self.version == "HTTP/1.0":
            parts.append("Connection: keep-alive\r\n\r\n")
        else:
            parts.append("\r\n")
        self.head_sent = True
        head = "".join(parts).encode("latin-1")
        if heads is not None:
            if len(heads) >= 8:
                heads.clear()  # bounded: stale Date seconds, many body lengths
            heads[key] = (date, head, self.chunked, self.keep_alive)
        return head

    def send_list(self, result: list) -> None:
        """Send a response the application returned as a list, in one ``sendall``."""
        if self.head_sent:
            for chunk in result:
                self.write(chunk)
            self.finish()
            return
        if self.status is None:
            raise ResponseError("the application returned without calling start_response()")
        try:
            body = b"".join(result)
        except TypeError:
            for chunk in result:
                _check_chunk(chunk)
            raise
        n = len(body)
        length = self.length
        if length is not None and n != length:
            if n > length:
                log.warning("the application sent more than its Content-Length (%d): cut", length)
                body = body[:length]
            else:
                log.warning("the application sent %d bytes of the %d its Content-Length "
                            "announced: closing the connection", n, length)
            self.keep_alive = False
        out = self._head(n)
        if self.sends_body and body:
            out += body
            self.body_sent = len(body)
        self.bytes_sent = len(out)
        self.send(out)

    def send_iterable(self, result: Iterable[bytes]) -> None:
        """Send a response body the application returned as any iterable, streaming it."""
        write = self.write
        for chunk in result:
            if chunk:
                write(chunk)
            elif type(chunk) is not bytes:
                _check_chunk(chunk)
        self.finish()

    def finish(self) -> None:
        """End the body: send the head if nothing was sent, or the last chunk."""
        if not self.head_sent:
            if self.status is None:
                raise ResponseError("the application returned without calling start_response()")
            out = self._head(0 if self.length is None else None)
            self.bytes_sent += len(out)
            self.send(out)
        elif self.chunked:
            self.bytes_sent += len(LAST_CHUNK)
            self.send(LAST_CHUNK)
        if self.sends_body and self.length is not None and self.body_sent < self.length:
            log.warning("the application sent %d bytes of the %d its Content-Length announced: "
                        "closing the connection", self.body_sent, self.length)
            self.keep_alive = False
