"""Listening and accepting, written once for every server: bind, TCP_NODELAY, the EMFILE policy.

How this works
--------------
`bind` makes a green listening socket from an address: ``(host, port)`` (a host name is resolved
off the loop; ``SO_REUSEADDR`` always, ``SO_REUSEPORT`` on request), a Unix socket path (a
stale socket file left by a dead server is removed first; a regular file never is), or a
socket already bound (made green if it is not, and put in listening mode).

`Acceptor` runs the accept loop in a dhaga: ``accept`` takes every pending connection without
waiting and parks only when the backlog is empty. Each accepted TCP connection gets
``TCP_NODELAY`` (`set_nodelay`, the one place it is set) and is handed to ``on_accept(sock,
address)``, which must return quickly (it normally spawns a dhaga). With ``limit`` (a
semaphore), a permit is taken *before* ``accept``, so a full server leaves new connections in
the kernel's backlog; the owner releases the permit when the connection closes.

The EMFILE policy: when ``accept`` fails for lack of descriptors or memory (EMFILE, ENFILE,
ENOBUFS, ENOMEM), the listener stays readable, so retrying at once would spin. The loop waits
until the owner reports a closed connection (`Acceptor.connection_closed`) or ``backoff``
seconds pass. It logs once per *episode*: a failure logs a warning only when no failure
happened in the ``episode_gap`` seconds before it; the failures after it are counted
(``accept_errors``) and logged at DEBUG. Any other unexpected ``accept`` error follows the
same rule (logged at ERROR with its traceback). Errors about one aborted connection
(ECONNABORTED, EPROTO...) are skipped silently.

This module knows green sockets, name resolution and dhagas; it knows nothing about protocols,
TLS, or what a server does with a connection.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket as _stdsocket
import stat
from time import monotonic
from typing import Any, Callable

from ..scheduler import Dhaga, spawn
from ..sync import Event
from . import dns
from .greensocket import socket

__all__ = ["Acceptor", "bind", "create_server", "remove_stale_socket", "set_nodelay"]

log = logging.getLogger("dhaga.server")

OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
CONNECTION_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET, errno.EPERM,
                             errno.EINTR, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                             errno.ENETUNREACH})
_TCP = frozenset({_stdsocket.AF_INET, _stdsocket.AF_INET6})
_IPPROTO_TCP = _stdsocket.IPPROTO_TCP
_TCP_NODELAY = _stdsocket.TCP_NODELAY


def set_nodelay(sock: Any) -> None:
    """Turn off Nagle's algorithm on a TCP socket (nothing for Unix sockets or on error)."""
    if sock.family in _TCP:
        try:
            sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except OSError:
            pass  # the peer is already gone: the first read or write says so


def remove_stale_socket(path: str | bytes) -> None:
    """Remove a Unix socket file left by a server that is gone; never a regular file."""
    if not path or path[:1] in ("\0", b"\0"):
        return  # an abstract socket name: no file
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _resolve(address: tuple, family: int) -> tuple[int, Any]:
    """The family and socket address to bind ``address`` to; IP literals pass as they are."""
    host, port = address[0], address[1]
    if not isinstance(host, str) or not host or dns.is_numeric_host(host):
        if family == _stdsocket.AF_UNSPEC:
            family = _stdsocket.AF_INET6 if isinstance(host, str) and ":" in host \
                else _stdsocket.AF_INET
        return family, address  # an IPv6 (host, port, flowinfo, scope_id) stays whole
    info = dns.getaddrinfo(host, port, family, _stdsocket.SOCK_STREAM, 0, _stdsocket.AI_PASSIVE)
    return info[0][0], info[0][4]


def bind(
    address: Any,
    *,
    family: int = _stdsocket.AF_UNSPEC,
    backlog: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool | None = None,
) -> socket:
    """A green socket bound to ``address`` and listening.

    Args:
        address: ``(host, port)`` (port 0 picks a free port; a host name is resolved without
            blocking the loop), a Unix socket path (str, bytes or path-like; a stale socket
            file there is removed first), or a socket already bound.
        family: the address family for ``(host, port)``; by default IPv6 if the host has a
            colon, else IPv4 (or what the name resolves to).
        backlog: the listen queue length (default: the system's maximum).
        reuse_port: set ``SO_REUSEPORT`` so several processes can serve one port.
        dualstack_ipv6: on an IPv6 socket, accept IPv4 connections too (True) or not
            (False); None leaves the system's default (``IPV6_V6ONLY`` off on Linux).

    Raises:
        OSError: the address could not be bound (in use, bad path...).
    """
    if backlog is None:
        backlog = _stdsocket.SOMAXCONN
    if isinstance(address, _socket.socket):  # the C type: still true after monkey-patching
        sock = address if isinstance(address, socket) else socket(
            address.family, address.type, address.proto, address.detach())
        try:
            sock.listen(backlog)
        except OSError:
            pass  # already listening
        return sock
    if isinstance(address, (str, bytes, os.PathLike)):
        path = os.fspath(address)
        remove_stale_socket(path)
        sock = socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    else:
        family, address = _resolve(tuple(address), family)
        sock = socket(family, _stdsocket.SOCK_STREAM)
        path = address
    try:
        if sock.family != _stdsocket.AF_UNIX:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
            if sock.family == _stdsocket.AF_INET6 and dualstack_ipv6 is not None:
                sock.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY,
                                0 if dualstack_ipv6 else 1)
        elif dualstack_ipv6:
            raise ValueError("dualstack_ipv6 requires an IPv6 address")
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def create_server(address: Any, *, family: int = _stdsocket.AF_INET, backlog: int | None = None,
                  reuse_port: bool = False, dualstack_ipv6: bool = False) -> socket:
    """A green listening TCP socket bound to ``address``, as `socket.create_server`."""
    if dualstack_ipv6 and family != _stdsocket.AF_INET6:
        raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    return bind(tuple(address), family=family, backlog=backlog, reuse_port=reuse_port,
                dualstack_ipv6=dualstack_ipv6)


class Acceptor:
    """The accept loop of one listening socket, with the EMFILE policy of the module docstring.

    Args:
        sock: a green listening socket (see `bind`); closed by `stop`.
        on_accept: called in the accept loop's dhaga with ``(sock, address)`` for each new
            connection; must not block (spawn a dhaga for the connection).
        name: what the log messages and the loop's dhaga are called.
        limit: a semaphore taken before each ``accept``; the owner releases it when the
            connection closes.
        backoff: longest wait, in seconds, after ``accept`` ran out of resources.
        logger: where failures are logged.
    """

    #: Failures closer together than this many seconds belong to one logged episode.
    episode_gap = 5.0

    def __init__(
        self,
        sock: socket,
        on_accept: Callable[[Any, Any], Any],
        *,
        name: str = "",
        limit: Any = None,
        backoff: float = 0.1,
        logger: logging.Logger = log,
    ) -> None:
        self.sock = sock
        self.on_accept = on_accept
        self.name = name or f"listener {sock.getsockname()!r}"
        self.limit = limit
        self.backoff = backoff
        self.log = logger
        #: How many times ``accept`` failed other than for one aborted connection.
        self.accept_errors = 0
        #: How many failure episodes were logged.
        self.episodes = 0
        self._last_failure = float("-inf")
        self._loop: Dhaga | None = None
        self._stopping = False
        self._stopped = Event()
        self._starved = False
        self._conn_closed = Event()

    def __repr__(self) -> str:
        return f"<Acceptor {self.name}>"

    def start(self) -> None:
        """Start the accept loop in a new dhaga (once); returns at once."""
        if self._stopping:
            raise RuntimeError(f"{self.name}: a stopped listener cannot be started again")
        if self._loop is not None:
            return
        self._loop = spawn(self._run)
        self._loop.name = f"accept {self.name}"

    def serve_forever(self) -> None:
        """Start if needed, then block until `stop` is called; stop if the caller is killed."""
        self.start()
        try:
            self._stopped.wait()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close the listening socket and end the accept loop; connections are the owner's."""
        if self._stopping:
            return
        self._stopping = True
        try:
            self.sock.close()  # wakes a parked accept with EBADF
            loop = self._loop
            if loop is not None and not loop.done():
                loop.kill(block=False)
        finally:
            self._stopped.set()

    def connection_closed(self) -> None:
        """Tell the loop a connection closed: a back-off for lack of descriptors ends now."""
        if self._starved:
            self._conn_closed.set()

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        sock = self.sock
        limit = self.limit
        on_accept = self.on_accept
        tcp = sock.family in _TCP
        while not self._stopping:
            if limit is not None:
                limit.acquire()
            try:
                conn, addr = sock.accept()
            except OSError as e:
                if limit is not None:
                    limit.release()
                if self._stopping or sock.fileno() < 0:
                    return
                if e.errno in CONNECTION_GONE:
                    continue
                self._failed(e)
                self._back_off()
                continue
            if tcp:
                try:
                    conn.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
                except OSError:
                    pass
            on_accept(conn, addr)

    def _failed(self, exc: OSError) -> None:
        """Count a failure; log it only if it starts an episode."""
        self.accept_errors += 1
        now = monotonic()
        new_episode = now - self._last_failure >= self.episode_gap
        self._last_failure = now
        resources = exc.errno in OUT_OF_RESOURCES
        if not new_episode:
            self.log.debug("%s: accept failed again (%s)", self.name, exc)
            return
        self.episodes += 1
        if resources:
            self.log.warning("%s: accept failed (%s); backing off until a connection closes "
                             "(more failures are counted, not logged, until none for %g s)",
                             self.name, exc, self.episode_gap)
        else:
            self.log.error("%s: accept failed; backing off", self.name, exc_info=exc)

    def _back_off(self) -> None:
        """Wait until a connection closes or ``backoff`` passes (never spin)."""
        self._conn_closed.clear()
        self._starved = True
        try:
            self._conn_closed.wait(self.backoff)
        finally:
            self._starved = False
