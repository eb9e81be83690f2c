"""``wsgi.input``: a request body read lazily from its connection, with or without chunking.

The body is read only when the application asks for it, through the connection's ``recv``,
which parks only the dhaga serving that connection. The first read that needs bytes from the
network sends ``100 Continue`` when the client asked for it. Bytes that arrive past the end of
the body (a pipelined request) are kept for the connection, never handed to the application.

This module must not know about sockets or WSGI environ keys: it talks to a `BodySource`.
"""

from __future__ import annotations

from typing import Iterator, Protocol

from ..errors import ConnectionLost
from .protocol import ChunkedDecoder, RequestError

__all__ = ["Input", "EMPTY_INPUT", "BodySource"]

#: How many bytes one network read asks for.
RECV_SIZE = 65536


class BodySource(Protocol):
    """What an `Input` reads from: the connection serving the request."""

    def recv_body(self, n: int) -> bytes:
        """Return up to ``n`` bytes from the network (b"" when the peer closed)."""

    def send_continue(self) -> None:
        """Send ``100 Continue`` (once, and only before the response has started)."""


class Input:
    """The request body as a read-only binary file (``read``, ``readline``, iteration).

    Args:
        source: the connection to read from.
        length: the ``Content-Length``, or None for a chunked body.
        decoder: the `ChunkedDecoder` for a chunked body.
        buffered: bytes already received after the head (body and possibly more).
        expect_continue: the client waits for ``100 Continue`` before sending the body.

    Raises (from the read methods):
        RequestError: the body broke the chunked framing (400) or the size limit (413), or a
            read timed out (408).
        ConnectionLost: the client closed the connection before the end of the body.
    """

    __slots__ = ("_source", "_left", "_decoder", "_buf", "_eof", "_leftover", "_expect", "_raw")

    def __init__(self, source: BodySource, length: int | None, decoder: ChunkedDecoder | None,
                 buffered: bytes, expect_continue: bool = False) -> None:
        self._source = source
        self._decoder = decoder
        self._expect = expect_continue
        self._leftover = b""
        self._raw = b""
        if decoder is None:
            n = length or 0
            self._buf = bytearray(buffered[:n])
            self._leftover = buffered[n:]
            self._left = n - len(self._buf)
            self._eof = self._left == 0
        else:
            self._left = 0
            self._buf = bytearray()
            self._eof = False
            self._raw = buffered  # decoded on the first read, so errors reach the application
        if buffered:
            self._expect = False  # the client sent the body without waiting

    def __repr__(self) -> str:
        return f"<dhaga.web.Input buffered={len(self._buf)} eof={self._eof}>"

    # ------------------------------------------------------------------ filling
    def _fill(self) -> bool:
        """Receive more of the body into the buffer; False at the end of the body."""
        if self._eof:
            return False
        source = self._source
        if self._expect:
            self._expect = False
            source.send_continue()
        decoder = self._decoder
        try:
            if decoder is None:
                data = source.recv_body(min(self._left, RECV_SIZE))
                if not data:
                    raise ConnectionLost("the client closed the connection in the middle of the body")
                self._left -= len(data)
                self._buf += data
                if not self._left:
                    self._eof = True
                return True
            while True:
                data = self._raw
                if data:
                    self._raw = b""
                else:
                    data = source.recv_body(RECV_SIZE)
                if not data:
                    raise ConnectionLost("the client closed the connection in the middle of the body")
                payload = decoder.feed(data)
                if payload:
                    self._buf += payload
                if decoder.done:
                    self._eof = True
                    self._leftover = decoder.leftover
                    return True
                if payload:
                    return True
        except TimeoutError as e:
            raise RequestError(408, "timed out reading the request body") from e

    # ------------------------------------------------------------------ file API
    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all of the rest when ``size`` is negative or None)."""
        buf = self._buf
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(buf)
            buf.clear()
            return data
        while len(buf) < size and self._fill():
            pass
        data = bytes(buf[:size])
        del buf[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """Read one line, including its ``\\n``, or at most ``size`` bytes of it."""
        buf = self._buf
        limit = None if size is None or size < 0 else size
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl >= 0:
                end = nl + 1
                break
            if limit is not None and len(buf) >= limit:
                end = limit
                break
            start = len(buf)
            if not self._fill():
                end = len(buf)
                break
        if limit is not None:
            end = min(end, limit)
        data = bytes(buf[:end])
        del buf[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read lines until the end, or until about ``hint`` bytes were read."""
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def close(self) -> None:
        """Does nothing: the server owns the connection (PEP 3333 forbids closing it)."""

    # ------------------------------------------------------------------ the server's side
    @property
    def done(self) -> bool:
        """True when the whole body has been received."""
        return self._eof

    def must_close(self, drain_limit: int = 65536) -> bool:
        """True when the connection cannot be kept once the response is sent.

        That is when the client still waits for ``100 Continue`` (it may never send the body),
        or more than ``drain_limit`` bytes of a ``Content-Length`` body are still unread.
        """
        if self._eof:
            return False
        return self._expect or (self._decoder is None and self._left > drain_limit)

    def finish(self, drain_limit: int) -> bytes | None:
        """Skip what the application did not read; return the bytes after the body.

        Returns:
            the bytes received after the body (the start of the next request), or None when
            the connection cannot be reused: more than ``drain_limit`` bytes were left
            unread, the client still waits for ``100 Continue``, or the body was broken.
        """
        if not self._eof:
            if self._expect:
                return None  # it may never send the body: close instead of waiting
            drained = len(self._buf)
            try:
                while not self._eof:
                    self._buf.clear()
                    if drained > drain_limit:
                        return None
                    self._fill()
                    drained += len(self._buf) + 1
            except (RequestError, ConnectionLost, OSError):
                return None
        self._buf.clear()
        return self._leftover


class _EmptyInput(Input):
    """The body of a request that has none: shared, always at its end."""

    __slots__ = ()

    def __init__(self) -> None:  # noqa: D107 - nothing to read, nothing to keep
        self._source = None  # type: ignore[assignment]
        self._decoder = None
        self._expect = False
        self._leftover = b""
        self._left = 0
        self._eof = True
        self._buf = bytearray()
        self._raw = b""

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""


#: The ``wsgi.input`` of every request without a body.
EMPTY_INPUT = _EmptyInput()
