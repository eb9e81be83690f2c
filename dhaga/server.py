"""`StreamServer`: accept TCP or Unix connections and serve each in its own dhaga.

How this works
--------------
Listening and accepting are `dhaga._io.listen`'s: `bind` makes the listening socket (a stale
Unix socket file is replaced) and an `Acceptor` runs the accept loop, sets ``TCP_NODELAY`` and
applies the one EMFILE policy (back off until a connection closes or ``accept_backoff``
passes, one warning per episode). Each connection gets a new dhaga that runs
``handler(sock, address)`` and closes the socket afterwards. With ``max_connections``, a
semaphore permit is taken *before* ``accept``, so a full server leaves new connections in the
kernel's backlog instead of accepting and starving them. A handler that raises is logged; the
server keeps serving.

This module knows green sockets, TLS wrapping and dhagas; it knows nothing about protocols.
"""

from __future__ import annotations

import logging
import os
import socket as _stdsocket
from types import FunctionType as _FunctionType
from typing import Any, Callable

from ._io.greensocket import socket as _GreenSocket
from ._io.listen import Acceptor, bind
from ._io.tls import wrap_ssl
from .errors import Timeout
from .group import joinall
from .scheduler import Dhaga, current, spawn
from .sync import Event, Semaphore

__all__ = ["StreamServer"]

log = logging.getLogger("dhaga.server")


class StreamServer:
    """A server that runs ``handler(sock, address)`` in a new dhaga per connection.

    Args:
        address: ``(host, port)`` for TCP (port 0 picks a free port), a path for a Unix
            socket (a stale socket file there is replaced; the file is removed by `stop`),
            or a socket already bound (and possibly listening). TCP connections get
            ``TCP_NODELAY``.
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

    Attributes:
        address: the bound address (port 0 resolved to the real port), once `start` has bound
            it; None before.
        handler: the connection handler given.
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
        self._acceptor: Acceptor | None = None
        self._path: str | bytes | None = None
        self._stopped = Event()
        self._stopping = False
        self.address: Any = None

    def __repr__(self) -> str:
        return f"<StreamServer {self.address!r} connections={len(self._handlers)}>"

    # ------------------------------------------------------------------ lifecycle
    @property
    def started(self) -> bool:
        """True once `start` (or `serve_forever`) has begun accepting connections."""
        return self._acceptor is not None

    @property
    def connections(self) -> int:
        """How many connections are being served now."""
        return len(self._handlers)

    def start(self) -> None:
        """Bind, listen, and start accepting in a background dhaga; returns at once."""
        if self._acceptor is not None:
            return
        if self._stopping:
            raise RuntimeError("a stopped StreamServer cannot be started again")
        addr = self._address_arg
        self._listener = bind(addr, backlog=self.backlog, reuse_port=self.reuse_port)
        self.address = self._listener.getsockname()
        if isinstance(addr, (str, bytes, os.PathLike)):
            self._path = os.fspath(addr)
        self._acceptor = Acceptor(self._listener, self._accepted, limit=self._limit,
                                  backoff=self.accept_backoff, logger=log,
                                  name=f"StreamServer {self.address!r}")
        self._acceptor.start()

    @property
    def accept_errors(self) -> int:
        """How many times ``accept`` failed for lack of resources (for monitoring and tests)."""
        return self._acceptor.accept_errors if self._acceptor is not None else 0

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
            if self._acceptor is not None:
                self._acceptor.stop()
            elif self._listener is not None:
                self._listener.close()
            if self._path is not None:
                try:
                    os.unlink(self._path)  # ours: we bound it
                except OSError:
                    pass
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
    def _accepted(self, sock: _GreenSocket, addr: Any) -> None:
        self._handlers[spawn(self._serve, sock, addr)] = sock

    def _serve(self, sock: _GreenSocket, addr: Any) -> None:
        try:
            if self.ssl_context is not None:
                try:
                    sock = wrap_ssl(sock, self.ssl_context, server_side=True)
                except OSError as e:  # ssl.SSLError is an OSError
                    log.info("%r: TLS handshake with %s failed: %s", self, addr, e)
                    return
            handler = self.handler
            if type(handler) is not _FunctionType and type(
                getattr(type(handler), "__call__", None)
            ) is _FunctionType:
                # an object with a Python __call__: its bound method is called without a C
                # call in between, so a parked connection's stack (copied at every switch)
                # stays shallow
                handler = handler.__call__
            handler(sock, addr)
        except Exception:
            log.error("%r: handler %r failed for %s", self, self.handler, addr, exc_info=True)
        finally:
            sock.close()
            self._handlers.pop(current(), None)  # type: ignore[arg-type]
            if self._limit is not None:
                self._limit.release()
            acceptor = self._acceptor
            if acceptor is not None:
                acceptor.connection_closed()
