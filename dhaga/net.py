"""Green networking: sockets, servers, name resolution, TLS and descriptor waits for dhagas.

The public face of `dhaga._greensocket` (the socket class), `dhaga._dns` (resolution off the
loop), `dhaga.tls`, `dhaga.server` and `dhaga._fdwait` (waiting on raw descriptors). It holds no
logic of its own, and must not know how any of them works.
"""

from __future__ import annotations

from socket import (  # noqa: F401 - re-exported so `dhaga.net` reads like `socket`
    AF_INET,
    AF_INET6,
    AF_UNIX,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SO_REUSEADDR,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOL_SOCKET,
    error,
    gaierror,
    herror,
    timeout,
)

from ._dns import (
    getaddrinfo,
    getfqdn,
    gethostbyaddr,
    gethostbyname,
    gethostbyname_ex,
    getnameinfo,
)
from ._fdwait import ConcurrentUseError, notify_close, wait_readable, wait_writable
from ._greensocket import create_connection, create_server, fromfd, socket, socketpair
from .server import StreamServer
from .tls import SSLSocket, wrap_ssl

socket.__module__ = __name__  # shown as `dhaga.net.socket`, where users find it

__all__ = [
    "socket",
    "SSLSocket",
    "create_connection",
    "create_server",
    "socketpair",
    "fromfd",
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
    "getfqdn",
    "wrap_ssl",
    "wait_readable",
    "wait_writable",
    "notify_close",
    "ConcurrentUseError",
    "StreamServer",
]
