"""The msgpack-rpc `Client`: one connection shared by any number of dhagas, reopened on demand.

This module must not know how messages are framed or dispatched (that is `Connection`'s job),
nor anything about serving.
"""

from __future__ import annotations

import copy
import os
import socket as _stdsocket
import ssl as _ssl
from typing import Any, Callable, TypeVar

from .. import net
from ..codecs.msgpack_rpc import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_OBJECTS
from ..errors import ConnectionLost, Timeout
from ..sync import Lock
from ._connection import DEFAULT_WRITE_BUFFER_LIMIT, Connection
from ._methods import Methods, format_error

__all__ = ["Client", "Address"]

F = TypeVar("F", bound=Callable[..., Any])

#: A TCP ``(host, port)`` tuple, or the path of a Unix socket.
Address = Any


class _Default:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<the client's timeout>"


_DEFAULT: Any = _Default()


def _open_socket(address: Address, timeout: float | None, ssl_context: _ssl.SSLContext | None,
                server_hostname: str | None) -> Any:
    """Connect a green socket to ``address`` (TCP tuple or Unix path), TLS if asked.

    Raises:
        Timeout: the connection was not made within ``timeout``.
        OSError: the connection was refused, the name did not resolve...
    """
    try:
        if isinstance(address, (str, bytes, os.PathLike)):
            sock = net.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(os.fspath(address))
            except BaseException:
                sock.close()
                raise
        else:
            sock = net.create_connection(tuple(address), timeout=timeout)
            sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        if ssl_context is not None:
            if server_hostname is None and not isinstance(address, (str, bytes, os.PathLike)):
                server_hostname = address[0]
            try:
                sock = net.wrap_ssl(sock, ssl_context, server_hostname=server_hostname)
            except BaseException:
                sock.close()
                raise
    except TimeoutError as exc:
        if isinstance(exc, Timeout):
            raise
        raise Timeout(f"could not connect to {address!r} within {timeout}s", timeout) from None
    sock.settimeout(None)
    return sock


def _copy(exc: BaseException) -> BaseException:
    """A fresh copy of ``exc`` to raise in another dhaga (tracebacks are per raise)."""
    try:
        return copy.copy(exc).with_traceback(None)
    except Exception:  # noqa: BLE001 - an exception class that cannot be copied
        return ConnectionLost(f"connecting failed: {type(exc).__name__}: {exc}")


class _Proxy:
    """``client.proxy.add(1, 2)`` is ``client.call("add", 1, 2)``; ``proxy["a.b"]`` for any name."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> Callable[..., Any]:
        call = self._client.call

        def remote_method(*args: Any, timeout: Any = _DEFAULT) -> Any:
            return call(name, *args, timeout=timeout)

        remote_method.__name__ = remote_method.__qualname__ = name
        return remote_method

    def __repr__(self) -> str:
        return f"<rpc proxy of {self._client!r}>"


class Client:
    """A msgpack-rpc client: calls multiplexed by msgid over one connection.

    Safe to share between any number of dhagas of one OS thread. It connects on first use
    (or `connect`), and when the connection drops, calls in flight fail with
    `ConnectionLost` and the next call connects again. Endpoints are symmetric: handlers
    registered here serve the requests and notifications the server sends.

    Attributes:
        proxy: ``client.proxy.add(1, 2)`` is ``client.call("add", 1, 2)``; ``proxy["a.b"]``
            reaches any name.
        methods: the `Methods` registry of handlers for the server's requests.
        address: the server's address, as given.
        timeout: the default timeout of `call`.
        connections_opened: how many connections this client has opened so far.

    Example:
        with Client(("127.0.0.1", 8000), timeout=5) as client:
            assert client.call("add", 1, 2) == 3
            assert client.proxy.add(1, 2) == 3

    Args:
        address: ``(host, port)`` for TCP, or a Unix socket's path.
        timeout: the default timeout of `call`, in seconds; None waits forever.
        connect_timeout: limit for opening the connection; None uses the call's timeout.
        ssl_context: speak TLS, with this client-side context.
        server_hostname: the name to check the server's certificate against (default: host).
        max_message_size: largest message accepted from the server, in bytes.
        write_buffer_limit: queued bytes above which callers wait for the socket.
        format_error: makes the error object sent when a handler registered here raises.
        max_objects: most values (at every depth) one message from the server may hold.
    """

    def __init__(
        self,
        address: Address,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        ssl_context: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        write_buffer_limit: int = DEFAULT_WRITE_BUFFER_LIMIT,
        format_error: Callable[[Exception], Any] = format_error,
        max_objects: int = DEFAULT_MAX_OBJECTS,
    ) -> None:
        self.address = address
        self.max_objects = max_objects
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.max_message_size = max_message_size
        self.write_buffer_limit = write_buffer_limit
        self.methods = Methods(format_error)
        self.proxy = _Proxy(self)
        self._conn: Connection | None = None
        self._connect_lock = Lock()
        self._attempts = 0  # connection attempts completed
        self._failure: tuple[int, BaseException] | None = None
        self._closed = False
        #: How many connections this client has opened (1 + reconnections).
        self.connections_opened = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self.connected else "idle"
        return f"<dhaga.rpc.Client {self.address!r} {state}>"

    # ------------------------------------------------------------------ handlers
    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Serve the server's requests and notifications named ``name`` with ``fn(*params)``.

        Args:
            name: the method name peers send.
            fn: called with the request's parameters; its return value is the reply.

        Raises:
            TypeError: ``name`` is not a str or ``fn`` is not callable.
        """
        self.methods.register(name, fn)

    def method(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Decorator form of `register`: ``@client.method`` or ``@client.method(name=...)``.

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

    # ------------------------------------------------------------------ connection
    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._conn is not None and not self._conn.closed

    @property
    def connection(self) -> Connection | None:
        """The open connection, if any."""
        conn = self._conn
        return conn if conn is not None and not conn.closed else None

    def connect(self, timeout: Any = _DEFAULT) -> Connection:
        """Open the connection now, unless one is open; return it.

        Dhagas that call at once share one attempt: if it fails, they all see its error.

        Args:
            timeout: seconds for this attempt; by default the client's ``connect_timeout``.

        Returns:
            the open `Connection`.

        Raises:
            ConnectionLost: the client was closed.
            Timeout: no connection within ``connect_timeout`` (or ``timeout``).
            OSError: the server refused or could not be reached.
        """
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            raise ConnectionLost(f"{self!r} is closed")
        if timeout is _DEFAULT:
            timeout = self.timeout
        if self.connect_timeout is not None:
            timeout = self.connect_timeout
        attempt = self._attempts
        if not self._connect_lock.acquire(timeout=-1 if timeout is None else timeout):
            raise Timeout(f"could not connect to {self.address!r} within {timeout}s", timeout)
        try:
            conn = self._conn
            if conn is not None and not conn.closed:
                return conn
            if self._closed:
                raise ConnectionLost(f"{self!r} is closed")
            failure = self._failure
            if failure is not None and failure[0] > attempt:
                raise _copy(failure[1])  # the attempt made while we waited failed
            try:
                sock = _open_socket(self.address, timeout, self.ssl_context, self.server_hostname)
            except BaseException as exc:
                self._attempts += 1
                self._failure = (self._attempts, exc)
                raise
            self._attempts += 1
            self._failure = None
            if self._closed:  # closed while we were connecting
                sock.close()
                raise ConnectionLost(f"{self!r} is closed")
            conn = Connection(sock, self.methods, peer=self.address,
                              max_message_size=self.max_message_size,
                              write_buffer_limit=self.write_buffer_limit,
                              max_objects=self.max_objects)
            conn.start()
            self.connections_opened += 1
            self._conn = conn
            return conn
        finally:
            self._connect_lock.release()

    # ------------------------------------------------------------------ calling
    def call(self, method: str, *args: Any, timeout: Any = _DEFAULT) -> Any:
        """Call ``method(*args)`` on the server and wait for the result.

        Args:
            method: the remote method's name.
            *args: its parameters: msgpack's plain types (and ExtHandle) only.
            timeout: seconds to wait for the reply; None waits forever; by default the
                client's ``timeout``.

        Returns:
            The remote method's result.

        Raises:
            RemoteError: the server answered with an error (``.error`` holds it as sent).
            Timeout: no reply in time; the late reply is dropped.
            ConnectionLost: the connection dropped before the reply (the next call
                reconnects), or the client is closed.
            OSError: a new connection could not be made.
        """
        if timeout is _DEFAULT:
            timeout = self.timeout
        conn = self._conn
        if conn is None or conn._closed:
            conn = self.connect(timeout)
        return conn.call(method, *args, timeout=timeout)

    def notify(self, method: str, *args: Any) -> None:
        """Send a notification (no reply); connects first if needed.

        Args:
            method: the peer's method name.
            *args: its parameters (any msgpack-serialisable values).

        Raises:
            ConnectionLost: the client is closed or the connection has just ended.
        """
        conn = self._conn
        if conn is None or conn._closed:
            conn = self.connect()
        conn.notify(method, *args)

    def close(self) -> None:
        """Close the connection (queued notifications are sent if the socket takes them).

        Calls in flight fail with `ConnectionLost`; later calls raise it. Idempotent.
        """
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
