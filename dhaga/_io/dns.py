"""Name resolution that never blocks the event loop: the libc resolver in a worker thread.

Numeric hosts (IP literals, None, "") are resolved at once with ``AI_NUMERICHOST``, which never
touches the network; any other name goes to `dhaga.to_thread` running the standard library's
own function, so ``/etc/hosts``, ``nsswitch.conf`` and the system's DNS settings all apply.
This module knows `to_thread` and the `socket` module's resolver functions, nothing else.
"""

from __future__ import annotations

import socket as _stdsocket
from typing import Any

from ..threads import to_thread

__all__ = [
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
    "getfqdn",
]

# The standard library's functions, captured before any monkey-patching replaces them.
_std_getaddrinfo = _stdsocket.getaddrinfo
_std_gethostbyname = _stdsocket.gethostbyname
_std_gethostbyname_ex = _stdsocket.gethostbyname_ex
_std_gethostbyaddr = _stdsocket.gethostbyaddr
_std_getnameinfo = _stdsocket.getnameinfo
_AI_NUMERICHOST = _stdsocket.AI_NUMERICHOST
_NI_NUMERIC = _stdsocket.NI_NUMERICHOST | _stdsocket.NI_NUMERICSERV
_gaierror = _stdsocket.gaierror
_inet_pton = _stdsocket.inet_pton


def is_numeric_host(host: Any) -> bool:
    """True when ``host`` needs no lookup: None, "", or an IPv4/IPv6 literal."""
    if host is None or host == "" or host == b"":
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    for family in (_stdsocket.AF_INET, _stdsocket.AF_INET6):
        try:
            _inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list[tuple[Any, Any, int, str, tuple]]:
    """`socket.getaddrinfo`, without blocking the loop; same arguments, results and errors.

    Args:
        host: a host name or address, or None.
        port: a port number, service name or None.
        family: restrict to this address family (0: any).
        type: restrict to this socket type (0: any).
        proto: restrict to this protocol (0: any).
        flags: ``AI_*`` flags.

    Returns:
        ``(family, type, proto, canonname, sockaddr)`` tuples.

    Raises:
        socket.gaierror: the name did not resolve.
    """
    if is_numeric_host(host):
        return _std_getaddrinfo(host, port, family, type, proto, flags)
    if flags & _AI_NUMERICHOST:
        return _std_getaddrinfo(host, port, family, type, proto, flags)
    return to_thread(_std_getaddrinfo, host, port, family, type, proto, flags)


def gethostbyname(hostname: str) -> str:
    """`socket.gethostbyname`, without blocking the loop.

    Args:
        hostname: the name to resolve.

    Returns:
        an IPv4 address as text.

    Raises:
        socket.gaierror: the name did not resolve.
    """
    if is_numeric_host(hostname) and hostname:
        return _std_gethostbyname(hostname)
    return to_thread(_std_gethostbyname, hostname)


def gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    """`socket.gethostbyname_ex`, without blocking the loop.

    Args:
        hostname: the name to resolve.

    Returns:
        ``(name, aliases, addresses)``.

    Raises:
        socket.gaierror: the name did not resolve.
    """
    return to_thread(_std_gethostbyname_ex, hostname)


def gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    """`socket.gethostbyaddr` (a reverse lookup), without blocking the loop.

    Args:
        ip_address: an IPv4 or IPv6 address (or a host name).

    Returns:
        ``(name, aliases, addresses)``.

    Raises:
        socket.herror: the address has no name.
    """
    return to_thread(_std_gethostbyaddr, ip_address)


def getnameinfo(sockaddr: tuple, flags: int) -> tuple[str, str]:
    """`socket.getnameinfo`, without blocking the loop (numeric-only flags answer at once).

    Args:
        sockaddr: ``(host, port)`` (or the IPv6 four-tuple).
        flags: ``NI_*`` flags.

    Returns:
        ``(host, port)`` as text.

    Raises:
        socket.gaierror: the lookup failed.
    """
    if flags & _NI_NUMERIC == _NI_NUMERIC:
        return _std_getnameinfo(sockaddr, flags)
    return to_thread(_std_getnameinfo, sockaddr, flags)


def _fqdn(name: str) -> str:
    # socket.getfqdn's own logic, calling the captured resolver (the patched module global
    # would hop to a thread again from inside the worker thread).
    name = name.strip()
    if not name or name in ("0.0.0.0", "::"):
        name = _stdsocket.gethostname()
    try:
        hostname, aliases, _ = _std_gethostbyaddr(name)
    except OSError:
        return name
    aliases.insert(0, hostname)
    for alias in aliases:
        if "." in alias:
            return alias
    return hostname


def getfqdn(name: str = "") -> str:
    """`socket.getfqdn`, without blocking the loop.

    Args:
        name: a host name; empty means this host.

    Returns:
        the fully qualified name, or ``name`` itself when none is found.
    """
    return to_thread(_fqdn, name)
