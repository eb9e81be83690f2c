"""Serving WSGI applications (PEP 3333) over one HTTP/1.1 connection.

How this works
--------------
`WSGIHandler` is called with a connected socket (anything with ``recv``, ``sendall`` and
``settimeout``) and runs every request that arrives on it, one after the other, in the dhaga
that called it; a server calls it in a new dhaga per connection, so each request in flight has
a dhaga of its own, and a request that blocks parks only that dhaga.

The bytes received wait in a buffer: the head is parsed from it (`dhaga.web.protocol`) and
turned into an environ (`dhaga.web.environ`); a connection keeps its last head with both, so a
client repeating a head byte for byte skips parsing it (a copy of the environ is all it
costs). The body is handed to the application as a lazy `dhaga.web.body.Input`, and what
follows stays for the next request, so pipelined requests are answered in order. A response the application
returns as a list (the common case) goes out as one ``sendall`` of head and body, with a
``Content-Length`` computed when the application gave none. Any other iterable, and the
``write`` callable, stream: the head goes with the first non-empty chunk, framed chunked for
HTTP/1.1 clients when the length is unknown.

Timeouts: the first byte of a request must come within ``keepalive_timeout`` (``header_timeout``
for the first request of a connection), and the rest of the head within ``header_timeout`` of
it; a client too slow with its head gets 408 and the connection is closed. Each read of the body
and each send of the response must complete within ``timeout``, and the whole body must have
arrived within ``body_timeout`` of the head (a client sending a byte a second gets 408). Rather than a timer per wait
(a timer per request is a tenth of the cost of a hello-world request on asyncio's loop), each
connection records the deadline of the operation it is blocked in, and `WSGIHandler.reap`, run
a few times per second, shuts down the sockets past their deadline: the blocked ``recv`` sees
the end of the stream (and the connection answers 408, or closes), a blocked send fails.

Graceful stop: `close_idle` shuts down the keep-alive connections waiting for their next
request (their dhagas see the end of the stream and return); connections in the middle of a
request finish it, answer with ``Connection: close``, and return; a new connection still gets
its first request answered, since its client is about to send it.

This module must not know how connections are accepted, nor about processes or signals.
"""

from __future__ import annotations

import _socket
import logging
import socket as _stdsocket
import sys
from time import monotonic, perf_counter, strftime
from typing import Any, Callable, Iterable

from ..net import socket as _green_socket
from ..scheduler import sleep
from .body import EMPTY_INPUT, Input
from .environ import environ_for
from .protocol import (
    CONTINUE,
    DEFAULT_LIMITS,
    ChunkedDecoder,
    Limits,
    RequestError,
    error_response,
    head_end,
    parse_head,
)
from .response import Response, ResponseError

__all__ = ["WSGIHandler", "WSGIApp"]

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]

log = logging.getLogger("dhaga.web")
access_log = logging.getLogger("dhaga.web.access")
_INFO = logging.INFO

RECV_SIZE = 65536
#: Unread request body the server reads and drops to keep a connection alive (more: close).
DRAIN_LIMIT = 65536
#: Seconds a client has to send a whole request body after its head, by default.
DEFAULT_BODY_TIMEOUT = 120.0

_CR_LF = (13, 10)
_c_send = _socket.socket.send


class _ClientGone(Exception):
    """Sending to the client failed: it went away. Ends the connection quietly."""


class WSGIHandler:
    """Serves a WSGI application on connections: call it with ``(sock, address)``.

    Args:
        app: the WSGI application.
        limits: size limits on requests.
        header_timeout: seconds a client has to send a complete request head.
        keepalive_timeout: seconds an open connection may wait for its next request.
        timeout: seconds each read of a body or send of a response may take.
        body_timeout: seconds a client has to send a whole request body, from the end of its
            head (None: no total limit, only ``timeout`` per read); 408 after.
        environ: extra keys for every request's environ (``wsgi.url_scheme``, ...).
        server_address: the listening address, for ``SERVER_NAME`` and ``SERVER_PORT``.
        multiprocess: the value of ``wsgi.multiprocess``.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        limits: Limits = DEFAULT_LIMITS,
        header_timeout: float = 10.0,
        keepalive_timeout: float = 75.0,
        timeout: float = 60.0,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
        environ: dict[str, Any] | None = None,
        server_address: Any = None,
        multiprocess: bool = False,
    ) -> None:
        self.app = app
        self.limits = limits
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.timeout = timeout
        self.body_timeout = body_timeout
        self.closing = False
        self.connections: set[_Connection] = set()
        #: Requests answered so far (the gunicorn worker counts them for max-requests).
        self.requests = 0
        base: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,  # other dhagas run the application concurrently
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": "dhaga.web",
            "SERVER_NAME": "",
            "SERVER_PORT": "",
        }
        if isinstance(server_address, tuple):
            base["SERVER_NAME"] = str(server_address[0])
            base["SERVER_PORT"] = str(server_address[1])
        if environ:
            base.update(environ)
        self.base_environ = base

    def __call__(self, sock: Any, address: Any) -> None:
        """Serve every request that arrives on ``sock``; returns when the connection ends."""
        if sock.gettimeout() is not None:
            sock.settimeout(None)  # timeouts are the reaper's job: no timer per wait
        conn = _Connection(self, sock, address)
        self.connections.add(conn)
        try:
            conn.serve()
        except _ClientGone:
            pass
        finally:
            self.connections.discard(conn)

    def reap(self, now: float | None = None) -> int:
        """End the socket operations past their deadline; returns how many.

        A connection waiting for a head or a body too long has its reading side shut down
        (the head's reader answers 408), one stuck sending has both sides shut down. The
        server calls this a few times per second (`run_reaper`).

        Args:
            now: the current ``time.monotonic()``; taken when None.

        Returns:
            how many operations were ended.
        """
        if now is None:
            now = monotonic()
        n = 0
        for conn in list(self.connections):
            deadline = conn.deadline
            if deadline and deadline <= now:
                conn.deadline = 0.0
                conn.timed_out = True
                n += 1
                try:
                    conn.sock.shutdown(_stdsocket.SHUT_RDWR if conn.writing else _stdsocket.SHUT_RD)
                except OSError:
                    pass
        return n

    def run_reaper(self) -> None:
        """Call `reap` periodically, forever (run it in a dhaga; kill it to stop)."""
        timeouts = [1.0, self.header_timeout, self.keepalive_timeout, self.timeout]
        if self.body_timeout is not None:
            timeouts.append(self.body_timeout)
        period = max(0.005, min(timeouts) / 4)
        while True:
            sleep(period)
            self.reap()

    def close_idle(self) -> int:
        """Start a graceful stop: end the connections idle between requests; returns how many.

        Connections in the middle of a request finish it and then close; a connection that has
        not sent its first request yet is given it (its client is about to send it).

        Returns:
            how many idle connections were ended.
        """
        self.closing = True
        n = 0
        for conn in list(self.connections):
            if conn.idle:
                n += 1
                try:
                    conn.sock.shutdown(_stdsocket.SHUT_RDWR)
                except OSError:
                    pass
        return n


class _Connection:
    """One client connection: its buffer, and the request being answered."""

    __slots__ = ("handler", "sock", "address", "env", "idle", "served", "deadline",
                 "body_deadline", "timed_out", "writing", "response", "raw_send")

    def __init__(self, handler: WSGIHandler, sock: Any, address: Any) -> None:
        self.handler = handler
        self.sock = sock
        self.address = address
        env = dict(handler.base_environ)
        if isinstance(address, tuple):
            env["REMOTE_ADDR"] = str(address[0])
            env["REMOTE_PORT"] = str(address[1])
        else:
            env["REMOTE_ADDR"] = str(address or "")
        self.env = env
        self.idle = False
        self.served = 0
        #: When the socket operation under way must have completed (monotonic; 0: none).
        self.deadline = 0.0
        #: When the request body must have been received in full (monotonic; 0: no body).
        self.body_deadline = 0.0
        self.timed_out = False
        self.writing = False
        self.response: Response | None = None
        #: The C ``send`` of a plain (not TLS) non-blocking green socket: a response that fits
        #: in the socket's buffer goes out in one call, with no deadline to arm.
        self.raw_send = _c_send if type(sock) is _green_socket else None

    def __repr__(self) -> str:
        return f"<dhaga.web connection {self.address!r} served={self.served}>"

    # ------------------------------------------------------------------ socket helpers
    def recv_body(self, n: int) -> bytes:
        """Receive up to ``n`` bytes of request body (for `Input`).

        Raises:
            TimeoutError: nothing came within ``timeout`` seconds, or the body's total
                deadline (``body_timeout`` after its head) passed.
        """
        deadline = monotonic() + self.handler.timeout
        body_deadline = self.body_deadline
        if body_deadline and body_deadline < deadline:
            deadline = body_deadline
        self.deadline = deadline
        try:
            data = self.sock.recv(n)
        finally:
            self.deadline = 0.0
        if not data and self.timed_out:
            raise TimeoutError("timed out reading the request body")
        return data

    def send_continue(self) -> None:
        """Send ``100 Continue`` unless the response has already started (for `Input`)."""
        resp = self.response
        if resp is not None and not resp.head_sent:
            self.sendall(CONTINUE)

    def sendall(self, data: bytes) -> None:
        raw = self.raw_send
        if raw is not None and type(data) is bytes:  # a view's len() may count items, not bytes
            try:
                sent = raw(self.sock, data)
            except BlockingIOError:
                sent = 0
            except OSError as e:
                raise _ClientGone(str(e)) from e
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        self.deadline = monotonic() + self.handler.timeout
        self.writing = True
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise _ClientGone(str(e)) from e
        finally:
            self.deadline = 0.0
            self.writing = False

    def _read_head(self, buf: bytes) -> tuple[bytes, int]:
        """Receive until ``buf`` holds a complete head; ``(buf, -1)`` when the client left."""
        handler = self.handler
        limits = handler.limits
        sock = self.sock
        if not buf:
            if self.served:
                if handler.closing:
                    return b"", -1
                self.idle = True  # between two requests: a graceful stop may close it
                self.deadline = monotonic() + handler.keepalive_timeout
            else:
                self.deadline = monotonic() + handler.header_timeout
            try:
                buf = sock.recv(RECV_SIZE)
            except OSError:  # an idle connection that times out just closes
                return b"", -1
            finally:
                self.idle = False
            if not buf:
                return b"", -1
            if buf[:1] in (b"\r", b"\n"):
                buf = buf.lstrip(b"\r\n")
            end = head_end(buf, limits)
            if end >= 0:
                self.deadline = 0.0
                return buf, end
        self.deadline = monotonic() + handler.header_timeout
        scanned = 0
        while True:
            end = head_end(buf, limits, scanned)
            if end >= 0:
                self.deadline = 0.0
                return buf, end
            scanned = len(buf)
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                data = b""
                self.timed_out = True
            except OSError:
                return b"", -1
            if not data:
                if self.timed_out:
                    raise RequestError(408, "timed out waiting for the request head")
                return b"", -1
            buf += data
            if buf[:1] in (b"\r", b"\n"):
                buf = buf.lstrip(b"\r\n")
                scanned = 0

    # ------------------------------------------------------------------ the request loop
    def serve(self) -> None:
        handler = self.handler
        limits = handler.limits
        app = handler.app
        base_env = self.env
        body_timeout = handler.body_timeout
        keepalive_timeout = handler.keepalive_timeout
        send = self.sendall
        recv = self.sock.recv
        # A head no longer than this is within both limits head_end checks: no need to ask it.
        quick = min(limits.max_request_line, limits.max_header_size)
        is_enabled = access_log.isEnabledFor
        # The logger's own answer cache (logging clears it in place when levels change): a
        # lookup per request instead of a call. None (not cached, or no such cache): ask.
        enabled_cache = getattr(access_log, "_cache", None)
        if type(enabled_cache) is not dict:
            enabled_cache = {}
        buf = b""
        # The last head, its parse and its environ: a keep-alive client that sends the same
        # head again (an API client, a health check, a load generator) skips both steps.
        last_head = b""
        last_req: Any = None
        last_env: dict = {}
        memo: list = []  # the last response head checked (see Response)
        new_response = object.__new__  # then Response.begin (see there)
        while True:
            try:
                if not buf and self.served and not handler.closing:
                    # Between two requests (the common case): wait for the next head here,
                    # as _read_head would, without the call.
                    self.idle = True  # a graceful stop may close it
                    self.deadline = monotonic() + keepalive_timeout
                    try:
                        buf = recv(RECV_SIZE)
                    except OSError:  # an idle connection that times out just closes
                        return
                    finally:
                        self.idle = False
                    if not buf:
                        return
                    self.deadline = 0.0
                if buf:
                    if buf[0] in _CR_LF:
                        buf = buf.lstrip(b"\r\n")
                    end = buf.find(b"\r\n\r\n")
                else:
                    end = -1
                if end < 0 or end > quick:
                    if end < 0 or end > limits.max_header_size:
                        buf, end = self._read_head(buf)
                        if end < 0:
                            return
                    else:
                        head_end(buf, limits)  # the request-line limit
                head = buf[:end]
                if head == last_head:
                    req = last_req
                    env = last_env.copy()
                else:
                    req = parse_head(head, limits)
                    env = environ_for(req, base_env)
                    last_head, last_req, last_env = head, req, env.copy()
            except RequestError as e:
                self._refuse(e)
                return
            buf = buf[end + 4:]
            enabled = enabled_cache.get(_INFO)
            if enabled is None:
                enabled = is_enabled(_INFO)
            t0 = perf_counter() if enabled else 0.0

            if req.chunked:
                inp: Input = Input(self, None, ChunkedDecoder(limits), buf, req.expect_continue)
                buf = b""
            elif req.content_length:
                inp = Input(self, req.content_length, None, buf, req.expect_continue)
                buf = b""
            else:
                inp = EMPTY_INPUT
            env["wsgi.input"] = inp
            if inp is not EMPTY_INPUT and body_timeout is not None:
                self.body_deadline = monotonic() + body_timeout

            resp = self.response = new_response(Response)
            resp.begin(send, handler, req.method == "HEAD", req.version,
                       req.keep_alive and not handler.closing, memo)
            if inp is not EMPTY_INPUT and not inp.done:
                resp.unread_body = inp
            self.served += 1
            handler.requests += 1
            # The application, inline: a failure before the head is sent answers 500 (see
            # _app_failed); an iterable's close() is always called (see _close_result).
            result = None
            try:
                result = app(env, resp.start_response)
                if type(result) is list:
                    resp.send_list(result)
                else:
                    resp.send_iterable(result)
            except _ClientGone:
                raise
            except Exception as e:
                self._app_failed(e, env, resp)
            finally:
                if result is not None and type(result) is not list:
                    self._close_result(result, env)
            self.response = None
            if inp is not EMPTY_INPUT:
                self.body_deadline = 0.0
            if t0:
                self._log_access(env, resp, perf_counter() - t0)
            if not resp.keep_alive or handler.closing:
                return
            if inp is not EMPTY_INPUT:
                if body_timeout is not None:
                    self.body_deadline = monotonic() + body_timeout
                rest = inp.finish(DRAIN_LIMIT)
                self.body_deadline = 0.0
                if rest is None:
                    return
                buf = rest

    def _app_failed(self, e: Exception, env: dict, resp: Response) -> None:
        """Answer 500 (or the body's error status) for an application that failed.

        Raises:
            _ClientGone: the response had started: all the server can do is close.
        """
        if isinstance(e, ResponseError):  # the response itself broke a rule after it started
            log.error("%s %s: %s", env["REQUEST_METHOD"], env["RAW_URI"], e)
            resp.keep_alive = False
            if resp.head_sent:
                raise _ClientGone(str(e)) from None
            self._answer_error(resp, 500)
        elif isinstance(e, RequestError):  # raised by wsgi.input: a bad or too large body
            resp.keep_alive = False
            if resp.head_sent:
                raise _ClientGone(str(e)) from None
            self._answer_error(resp, e.status, str(e))
        else:
            log.exception("%s %s: the application failed", env["REQUEST_METHOD"], env["RAW_URI"])
            resp.keep_alive = False
            if resp.head_sent:
                raise _ClientGone("the application failed after the response started") from None
            self._answer_error(resp, 500)

    def _close_result(self, result: Any, env: dict) -> None:
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("%s %s: the response's close() failed",
                              env["REQUEST_METHOD"], env["RAW_URI"])

    def _answer_error(self, resp: Response, status: int, message: str = "") -> None:
        resp.status_code = status
        data = error_response(status, message)
        resp.bytes_sent = len(data)
        resp.head_sent = True
        self.sendall(data)

    def _refuse(self, e: RequestError) -> None:
        """Answer a request we could not read with its error status, then close."""
        log.info("refused a request from %s: %s %s", self.address, e.status, e)
        try:
            self.sendall(error_response(e.status, str(e)))
        except _ClientGone:
            pass

    def _log_access(self, env: dict, resp: Response, seconds: float) -> None:
        access_log.info(
            '%s - - [%s] "%s %s %s" %s %s %.6f',
            env.get("REMOTE_ADDR", "-"), strftime("%d/%b/%Y:%H:%M:%S %z"),
            env["REQUEST_METHOD"], env["RAW_URI"], env["SERVER_PROTOCOL"],
            resp.status_code, resp.body_sent, seconds,
            extra={"remote_addr": env.get("REMOTE_ADDR"), "method": env["REQUEST_METHOD"],
                   "uri": env["RAW_URI"], "status": resp.status_code,
                   "bytes": resp.body_sent, "seconds": seconds},
        )
