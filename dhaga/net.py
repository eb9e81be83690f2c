"""Green networking: sockets, servers, name resolution, TLS and descriptor waits for dhagas.

The public face of the `dhaga._io` package (`greensocket`: the socket class; `dns`: resolution
off the loop; `tls`; `fdwait`: waiting on raw descriptors) and of `dhaga.server`. It holds no
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

from ._io.dns import (
    getaddrinfo,
    getfqdn,
    gethostbyaddr,
    gethostbyname,
    gethostbyname_ex,
    getnameinfo,
)
from ._io.fdwait import ConcurrentUseError, notify_close, wait_readable, wait_writable
from ._io.greensocket import create_connection, fromfd, socket, socketpair
from ._io.listen import create_server
from ._io.tls import SSLSocket, wrap_ssl
from .server import StreamServer

socket.__module__ = __name__  # shown as `dhaga.net.socket`, where users find it
SSLSocket.__module__ = __name__

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
