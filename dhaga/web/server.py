"""`WSGIServer`: a WSGI application served over HTTP/1.1 by a `dhaga.net.StreamServer`.

Every connection runs in its own dhaga (`dhaga.web.wsgi.WSGIHandler` does the HTTP); binding,
``TCP_NODELAY`` and the EMFILE policy are `dhaga._io.listen`'s, shared by every server. This
module adds what is about the listening side: the ``https`` scheme under TLS, and the graceful
stop (idle keep-alive connections closed at once, requests in flight given ``timeout`` seconds
to finish, then killed).

This module must not know HTTP or WSGI details, nor about processes and signals.
"""

from __future__ import annotations

import _socket
from typing import Any

from .. import net
from ..net import StreamServer
from ..scheduler import Dhaga, spawn
from ..sync import Event
from .protocol import Limits
from .wsgi import DEFAULT_BODY_TIMEOUT, WSGIApp, WSGIHandler

__all__ = ["WSGIServer"]


class WSGIServer:
    """Serve a WSGI application; each connection in its own dhaga.

    Args:
        app: the WSGI application.
        address: ``(host, port)`` (port 0 picks a free port), a Unix socket path, or a socket
            already bound (and possibly listening), as for `dhaga.net.StreamServer`.
        ssl_context: serve HTTPS with this server-side `ssl.SSLContext`.
        reuse_port: set ``SO_REUSEPORT`` so several processes can serve one port.
        backlog: the listen queue length.
        max_connections: serve at most this many connections at once.
        header_timeout: seconds a client has to send a complete request head (408 after).
        keepalive_timeout: seconds an idle keep-alive connection is kept open.
        timeout: seconds each read of a request body or send of a response may take.
        body_timeout: seconds a client has to send a whole request body after its head
            (408 after; None: no total limit). The default, 120 s, cuts off a client sending
            a byte a second; raise it for large uploads over slow links.
        max_request_line: longest request line accepted (414 beyond).
        max_header_size: largest request head accepted (431 beyond).
        max_headers: most header fields accepted (431 beyond).
        max_body_size: largest request body accepted, None for no limit (413 beyond).
        environ: extra keys for every request's environ.
        multiprocess: the value of ``wsgi.multiprocess`` (True when several processes serve).

    Start it with `start` (returns at once) or `serve_forever` (blocks until `stop`), in a
    dhaga or at top level. ``address`` is the bound address once started. Requests are logged
    to the ``dhaga.web.access`` logger at INFO level (nothing is formatted while that level is
    disabled); failures of the application go to ``dhaga.web``.

    Attributes:
        address: the bound address (port 0 resolved), once started; None before.
        handler: the `WSGIHandler` serving the connections.
        stream_server: the `dhaga.net.StreamServer` accepting them.
    """

    def __init__(
        self,
        app: WSGIApp,
        address: Any = ("127.0.0.1", 8000),
        *,
        ssl_context: Any = None,
        reuse_port: bool = False,
        backlog: int = 1024,
        max_connections: int | None = None,
        header_timeout: float = 10.0,
        keepalive_timeout: float = 75.0,
        timeout: float = 60.0,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
        max_request_line: int = 8190,
        max_header_size: int = 65536,
        max_headers: int = 100,
        max_body_size: int | None = 1 << 30,
        environ: dict[str, Any] | None = None,
        multiprocess: bool = False,
    ) -> None:
        extra = {"wsgi.url_scheme": "https" if ssl_context is not None else "http"}
        extra.update(environ or {})
        self.handler = WSGIHandler(
            app,
            limits=Limits(max_request_line, max_header_size, max_headers, max_body_size),
            header_timeout=header_timeout,
            keepalive_timeout=keepalive_timeout,
            timeout=timeout,
            body_timeout=body_timeout,
            environ=extra,
            multiprocess=multiprocess,
        )
        if isinstance(address, _socket.socket) and not isinstance(address, net.socket):
            # a plain socket (bound before monkey-patching, or by gunicorn): make it green here,
            # so that StreamServer recognises it whatever `socket.socket` names now
            address = net.socket(address.family, address.type, address.proto, address.detach())
        self.stream_server = StreamServer(
            address, self.handler, ssl_context=ssl_context, reuse_port=reuse_port,
            backlog=backlog, max_connections=max_connections,
        )
        self.address: Any = None
        self._reaper: Dhaga | None = None
        self._stopped = Event()

    def __repr__(self) -> str:
        return f"<WSGIServer {self.address!r} app={self.handler.app!r}>"

    @property
    def app(self) -> WSGIApp:
        """The WSGI application this server calls for every request."""
        return self.handler.app

    @property
    def connections(self) -> int:
        """How many connections are open now."""
        return len(self.handler.connections)

    @property
    def requests(self) -> int:
        """How many requests have been answered (or are being answered)."""
        return self.handler.requests

    def start(self) -> None:
        """Bind, listen and start accepting in the background; returns at once."""
        if self._reaper is not None:
            return
        self.stream_server.start()
        self._reaper = spawn(self.handler.run_reaper)
        self._reaper.name = "WSGIServer-reaper"
        self.address = self.stream_server.address
        env = self.handler.base_environ
        if isinstance(self.address, tuple):
            if not env.get("SERVER_NAME"):
                env["SERVER_NAME"] = str(self.address[0])
            if not env.get("SERVER_PORT"):
                env["SERVER_PORT"] = str(self.address[1])

    def serve_forever(self) -> None:
        """Start if needed, then block until `stop` (called from another dhaga) has finished.

        If the caller is killed or interrupted, the server stops at once.
        """
        self.start()
        try:
            self.stream_server.serve_forever()
        except BaseException:
            self._finish_stop()
            raise
        self._stopped.wait()

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: refuse new connections, let requests in flight finish.

        Keep-alive connections waiting for their next request are closed at once; a request
        being answered completes (its response says ``Connection: close``), and so does the
        first request of a connection accepted just before. After ``timeout`` seconds those
        still running are killed.

        Args:
            timeout: seconds to let requests in flight finish; None waits for all of them.
        """
        self.handler.close_idle()
        try:
            self.stream_server.stop(timeout)
        finally:
            self._finish_stop()

    def _finish_stop(self) -> None:
        if self._reaper is not None:
            self._reaper.kill()
        self._stopped.set()  # last: nothing of stop() is left to run once serve_forever returns

    def __enter__(self) -> WSGIServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(timeout=0)

