"""`StreamServer`: accept TCP or Unix connections and serve each in its own dhaga.

How this works
--------------
One dhaga runs the accept loop on a green listening socket: ``accept`` takes every pending
connection without waiting, and parks only when the backlog is empty. Each connection gets a
new dhaga that runs ``handler(sock, address)`` and closes the socket afterwards. With
``max_connections``, a semaphore permit is taken *before* ``accept``, so a full server leaves
new connections in the kernel's backlog instead of accepting and starving them.

When ``accept`` fails for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the
listener stays readable, so retrying at once would spin: the loop waits until a connection
closes or ``accept_backoff`` seconds pass. Errors about one aborted connection (ECONNABORTED,
EPROTO...) are skipped. A handler that raises is logged; the server keeps serving.

This module knows green sockets, TLS wrapping and dhagas; it knows nothing about protocols.
"""

from __future__ import annotations

import _socket
import errno
import logging
import socket as _stdsocket
from typing import Any, Callable

from ._io.greensocket import socket as _GreenSocket
from .errors import Timeout
from .group import joinall
from .scheduler import Dhaga, current, spawn
from .sync import Event, Semaphore
from ._io.tls import wrap_ssl

__all__ = ["StreamServer"]

log = logging.getLogger("dhaga.server")

_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_CONNECTION_GONE = {errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET, errno.EPERM,
                    errno.EINTR, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH}


class StreamServer:
    """A server that runs ``handler(sock, address)`` in a new dhaga per connection.

    Args:
        address: ``(host, port)`` for TCP (port 0 picks a free port), a path for a Unix
            socket, or a socket already bound (and possibly listening).
        handler: called with the connected (green) socket and the peer address; the socket
            is closed when it returns.
        ssl_context: wrap every connection in TLS (server side); the handshake runs in the
            connection's own dhaga.
        reuse_port: set ``SO_REUSEPORT`` so several processes can serve one port.
        backlog: the listen queue length.
        max_connections: serve at most this many connections at once; more wait in the
            kernel's backlog until one closes.
        accept_backoff: seconds to wait after ``accept`` ran out of descriptors (at most:
            the wait ends as soon as a connection closes).
    """

    def __init__(
        self,
        address: Any,
        handler: Callable[[Any, Any], Any],
        *,
        ssl_context: Any = None,
        reuse_port: bool = False,
        backlog: int = _stdsocket.SOMAXCONN,
        max_connections: int | None = None,
        accept_backoff: float = 0.1,
    ) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.reuse_port = reuse_port
        self.backlog = backlog
        self.max_connections = max_connections
        self.accept_backoff = accept_backoff
        self._address_arg = address
        self._listener: _GreenSocket | None = None
        self._limit = Semaphore(max_connections) if max_connections else None
        self._handlers: dict[Dhaga, Any] = {}  # each connection's dhaga -> its socket
        self._acceptor: Dhaga | None = None
        self._stopped = Event()
        self._stopping = False
        self._starved = False
        self._conn_closed = Event()
        self.address: Any = None
        #: How many times ``accept`` failed for lack of resources (for monitoring and tests).
        self.accept_errors = 0

    def __repr__(self) -> str:
        return f"<StreamServer {self.address!r} connections={len(self._handlers)}>"

    # ------------------------------------------------------------------ lifecycle
    @property
    def started(self) -> bool:
        return self._acceptor is not None

    @property
    def connections(self) -> int:
        """How many connections are being served now."""
        return len(self._handlers)

    def _make_listener(self) -> _GreenSocket:
        addr = self._address_arg
        if isinstance(addr, _socket.socket):  # the C type: still true after monkey-patching
            sock = addr if isinstance(addr, _GreenSocket) else _GreenSocket(
                addr.family, addr.type, addr.proto, addr.detach())
            try:
                sock.listen(self.backlog)
            except OSError:
                pass  # already listening
            return sock
        if isinstance(addr, (str, bytes)):
            sock = _GreenSocket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
        else:
            host = addr[0]
            family = _stdsocket.AF_INET6 if isinstance(host, str) and ":" in host else _stdsocket.AF_INET
            sock = _GreenSocket(family, _stdsocket.SOCK_STREAM)
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
        try:
            sock.bind(addr)
            sock.listen(self.backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    def start(self) -> None:
        """Bind, listen, and start accepting in a background dhaga; returns at once."""
        if self._acceptor is not None:
            return
        if self._stopping:
            raise RuntimeError("a stopped StreamServer cannot be started again")
        self._listener = self._make_listener()
        self.address = self._listener.getsockname()
        self._acceptor = spawn(self._accept_loop)
        self._acceptor.name = f"StreamServer-accept-{self.address}"

    def serve_forever(self) -> None:
        """Start if needed, then block until `stop` is called (from another dhaga).

        If the caller is killed or interrupted, the server stops at once.
        """
        self.start()
        try:
            self._stopped.wait()
        except BaseException:
            self.stop(timeout=0)
            raise

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, wait up to ``timeout`` for the handlers, then kill those left.

        Args:
            timeout: seconds to let running handlers finish; None waits for all of them.
        """
        if self._stopping:
            self._stopped.wait()
            return
        self._stopping = True
        try:
            if self._listener is not None:
                self._listener.close()  # wakes the accept loop with EBADF
            if self._acceptor is not None and self._acceptor is not current():
                self._acceptor.kill()
            me = current()
            handlers = [d for d in self._handlers if d is not me]
            try:
                joinall(handlers, timeout=timeout)
            except Timeout:
                for d in handlers:
                    d.kill(block=False)
                joinall(handlers)
            for d in handlers:  # killed before they started: their sockets are still open
                sock = self._handlers.pop(d, None)
                if sock is not None:
                    sock.close()
                    if self._limit is not None:
                        self._limit.release()
        finally:
            self._stopped.set()

    def __enter__(self) -> StreamServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(timeout=0)

    # ------------------------------------------------------------------ the dhagas
    def _accept_loop(self) -> None:
        listener = self._listener
        limit = self._limit
        handlers = self._handlers
        serve = self._serve
        assert listener is not None
        while not self._stopping:
            if limit is not None:
                limit.acquire()
            try:
                sock, addr = listener.accept()
            except OSError as e:
                if limit is not None:
                    limit.release()
                if self._stopping or listener.fileno() < 0:
                    return
                if e.errno in _CONNECTION_GONE:
                    continue
                self.accept_errors += 1
                if e.errno in _OUT_OF_RESOURCES:
                    log.warning("%r: accept failed (%s); waiting for a connection to close",
                                self, e)
                else:
                    log.error("%r: accept failed", self, exc_info=True)
                self._back_off()
                continue
            handlers[spawn(serve, sock, addr)] = sock

    def _back_off(self) -> None:
        """Wait until a connection closes or ``accept_backoff`` passes (never spin)."""
        self._conn_closed.clear()
        self._starved = True
        try:
            self._conn_closed.wait(self.accept_backoff)
        finally:
            self._starved = False

    def _serve(self, sock: _GreenSocket, addr: Any) -> None:
        try:
            if self.ssl_context is not None:
                try:
                    sock = wrap_ssl(sock, self.ssl_context, server_side=True)
                except OSError as e:  # ssl.SSLError is an OSError
                    log.info("%r: TLS handshake with %s failed: %s", self, addr, e)
                    return
            self.handler(sock, addr)
        except Exception:
            log.error("%r: handler %r failed for %s", self, self.handler, addr, exc_info=True)
        finally:
            sock.close()
            self._handlers.pop(current(), None)  # type: ignore[arg-type]
            if self._limit is not None:
                self._limit.release()
            if self._starved:
                self._conn_closed.set()
