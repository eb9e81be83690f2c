"""The msgpack-rpc `Server`: listen on TCP or Unix sockets, serve every request in its own dhaga.

This module must not know how messages are framed or dispatched (that is `Connection`'s job);
binding and accepting are `dhaga._io.listen`'s, through `dhaga.net.StreamServer`.
"""

from __future__ import annotations

import os
import socket as _stdsocket
import ssl as _ssl
from typing import Any, Callable, TypeVar

from .. import net
from .._io.listen import bind
from ..codecs.msgpack_rpc import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_OBJECTS
from ..errors import Timeout
from ..group import joinall
from ..scheduler import current
from ..semaphores import Semaphore
from ..sync import Event
from ._connection import DEFAULT_WRITE_BUFFER_LIMIT, Connection, log
from ._methods import Methods, format_error

__all__ = ["Server", "DEFAULT_MAX_IN_FLIGHT", "DEFAULT_MAX_IN_FLIGHT_TOTAL"]

#: Handlers one connection may have running at once, by default (past it, it is not read).
DEFAULT_MAX_IN_FLIGHT = 1000
#: Handlers a server may have running at once over all its connections, by default.
DEFAULT_MAX_IN_FLIGHT_TOTAL = 10_000

F = TypeVar("F", bound=Callable[..., Any])


class Server:
    """A msgpack-rpc server: each request runs in its own dhaga, each connection is symmetric.

    Attributes:
        methods: the `Methods` registry of handlers.

    Example:
        server = Server()

        @server.method
        def add(a, b):
            return a + b

        server.listen(("127.0.0.1", 0))
        server.serve_forever()

    A handler's exception reaches the caller as ``[type name, message]`` (raise `RemoteError`
    to send an error object of your own); an unknown method gets ``["NoSuchMethod", ...]``.
    Bytes that break the protocol, or a message over ``max_message_size``, close that one
    connection with a logged warning. In a handler, `current_connection()` is the caller's
    connection, to call it back.

    Args:
        max_message_size: largest message accepted from a client, in bytes.
        write_buffer_limit: bytes queued per connection above which handlers wait to reply.
        format_error: makes the error object sent for a handler's exception; the default
            sends ``[type name, message]``, `neovim_error` what Neovim expects.
        max_objects: most values (at every depth) one message from a client may hold.
        max_in_flight: most requests and notifications of one connection being handled at
            once (default 1,000); past it the server stops reading that connection until one
            finishes, so a client pipelining calls fills its own socket buffers. None: no limit.
        max_in_flight_total: the same over every connection (default 10,000); None: no limit.
        cancel_on_disconnect: kill the handlers of a client's requests when its connection
            ends (its replies could not be sent); notifications' handlers run on.
        idle_timeout: close a connection that sent nothing for this many seconds while none of
            its requests was running; None (the default) never does.
    """

    def __init__(
        self,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        write_buffer_limit: int = DEFAULT_WRITE_BUFFER_LIMIT,
        format_error: Callable[[Exception], Any] = format_error,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        max_in_flight: int | None = DEFAULT_MAX_IN_FLIGHT,
        max_in_flight_total: int | None = DEFAULT_MAX_IN_FLIGHT_TOTAL,
        cancel_on_disconnect: bool = True,
        idle_timeout: float | None = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.write_buffer_limit = write_buffer_limit
        self.max_objects = max_objects
        self.max_in_flight = max_in_flight
        self.max_in_flight_total = max_in_flight_total
        self.cancel_on_disconnect = cancel_on_disconnect
        self.idle_timeout = idle_timeout
        self._limiter = None if max_in_flight_total is None else Semaphore(max_in_flight_total)
        self.methods = Methods(format_error)
        self._listeners: list[Any] = []
        self._addresses: list[Any] = []
        self._sockets: list[Any] = []
        self._connections: set[Connection] = set()
        self._started = False
        self._stopping = False
        self._stopped = Event()

    def __repr__(self) -> str:
        return (f"<dhaga.rpc.Server {self.addresses!r} "
                f"connections={len(self._connections)}>")

    # ------------------------------------------------------------------ handlers
    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Serve requests and notifications named ``name`` with ``fn(*params)``.

        Args:
            name: the method name peers send.
            fn: called with the request's parameters; its return value is the reply.

        Raises:
            TypeError: ``name`` is not a str or ``fn`` is not callable.
        """
        self.methods.register(name, fn)

    def method(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Decorator form of `register`: ``@server.method`` or ``@server.method(name=...)``.

        Args:
            fn: the function, when used bare (``@x.method``).
            name: the method name to register under, instead of the function's own.

        Returns:
            the function unchanged (bare), or a decorator (called with ``name``).
        """
        return self.methods.method(fn, name=name)

    def register_object(self, obj: object, prefix: str = "") -> list[str]:
        """Register every public method of ``obj`` under ``prefix + name``.

        Args:
            obj: the object whose public methods (names not starting with ``_``) to serve.
            prefix: prepended to each method's name.

        Returns:
            the names registered.
        """
        return self.methods.register_object(obj, prefix)

    # ------------------------------------------------------------------ listening
    def listen(
        self,
        address: Any,
        *,
        ssl_context: _ssl.SSLContext | None = None,
        backlog: int = _stdsocket.SOMAXCONN,
        reuse_port: bool = False,
    ) -> Any:
        """Bind ``address`` now (``(host, port)``, port 0 picks one; or a Unix socket path).

        Connections are accepted once the server is started (at once if it already is).
        May be called several times to serve several addresses.

        Args:
            address: ``(host, port)`` (port 0 picks a free port) or a Unix socket path.
            ssl_context: a server-side context: connections on this address speak TLS.
            backlog: the listen backlog.
            reuse_port: set ``SO_REUSEPORT`` (several processes serving one port).

        Returns:
            The bound address (the port resolved).

        Raises:
            OSError: the address could not be bound (in use, bad path...).
            RuntimeError: the server was stopped.
        """
        if self._stopping:
            raise RuntimeError("a stopped Server cannot listen again")
        sock = bind(address, backlog=backlog, reuse_port=reuse_port)
        bound = sock.getsockname()
        listener = net.StreamServer(sock, self._serve_connection, ssl_context=ssl_context)
        self._listeners.append(listener)
        self._sockets.append(sock)
        self._addresses.append(bound)
        if self._started:
            listener.start()
        return bound

    @property
    def address(self) -> Any:
        """The first bound address (port 0 resolved), or None before `listen`."""
        return self._addresses[0] if self._addresses else None

    @property
    def addresses(self) -> list[Any]:
        """Every bound address."""
        return list(self._addresses)

    @property
    def connections(self) -> list[Connection]:
        """The connections being served now."""
        return list(self._connections)

    def start(self) -> None:
        """Start accepting on every address given to `listen`; returns at once."""
        if self._stopping:
            raise RuntimeError("a stopped Server cannot be started again")
        if not self._listeners:
            raise RuntimeError("call listen(address) before start()")
        self._started = True
        for listener in self._listeners:
            listener.start()

    def serve_forever(self) -> None:
        """Start, then block until `stop` is called (from another dhaga or a handler).

        If the caller is killed or interrupted, the server stops at once.
        """
        self.start()
        try:
            self._stopped.wait()
        except BaseException:
            self.stop(timeout=0)
            raise

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let running requests finish, then close every connection.

        Args:
            timeout: seconds the requests already running get to finish and reply (None:
                as long as they take); those still running then are killed.
        """
        if self._stopping:
            self._stopped.wait()
            return
        self._stopping = True
        try:
            me = current()
            tasks = [d for c in self._connections for d in c._tasks if d is not me]
            try:
                joinall(tasks, timeout=timeout)
            except Timeout:
                for d in tasks:
                    d.kill(block=False)
                joinall(tasks)
            for conn in list(self._connections):
                conn.close()
                conn.kill_handlers()
            for listener in self._listeners:
                listener.stop(timeout=timeout)
            for sock in self._sockets:  # a listener never started has not closed its own
                sock.close()
            for addr in self._addresses:
                if isinstance(addr, str) and addr and not addr.startswith("\0"):
                    try:
                        os.unlink(addr)
                    except OSError:
                        pass
        finally:
            self._stopped.set()

    def __enter__(self) -> Server:
        if self._listeners:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(timeout=0)

    # ------------------------------------------------------------------ connections
    def _serve_connection(self, sock: Any, addr: Any) -> None:
        if self._stopping:
            return
        if sock.family == _stdsocket.AF_UNIX:
            addr = f"unix:{sock.getsockname()}"
        conn = Connection(sock, self.methods, peer=addr,
                          max_message_size=self.max_message_size,
                          write_buffer_limit=self.write_buffer_limit, pause_reading=True,
                          on_close=self._connections.discard, max_objects=self.max_objects,
                          max_in_flight=self.max_in_flight, limiter=self._limiter,
                          cancel_on_close=self.cancel_on_disconnect,
                          idle_timeout=self.idle_timeout)
        self._connections.add(conn)
        log.debug("rpc connection from %s", addr)
        conn.serve()
