"""TLS over green sockets: an `ssl.SSLSocket` whose handshake, reads, writes and shutdown park.

How this works
--------------
`SSLSocket` subclasses both the standard library's `ssl.SSLSocket` (so ``isinstance`` checks
and every certificate/ALPN/session method are the real ones) and our green socket (so the OS
socket underneath is non-blocking and the user's timeout lives in Python). The C TLS object then
reports ``SSLWantReadError``/``SSLWantWriteError`` instead of blocking; `SSLSocket` catches
them, parks on the descriptor's reader or writer slot, and retries: the same try-first loop as
plain sockets. Only the methods that reach the C TLS object directly are overridden (``read``,
``write``, ``send``, ``do_handshake``, ``unwrap``, ``accept``); the rest of `ssl.SSLSocket`
funnels into them.

`ssl.SSLContext` is never subclassed or replaced: `dhaga.monkey` patches only the
``wrap_socket`` method of the existing class, to build this class when given a green socket.
That is what keeps contexts made before patching working, and what avoids the infinite
recursion gevent and eventlet hit when a context subclass meets the original class.

This module must not know about servers or monkey-patching.
"""

from __future__ import annotations

import ssl as _ssl
from time import monotonic
from typing import Any, Callable

from .greensocket import socket as _GreenSocket

__all__ = ["SSLSocket", "wrap_ssl"]

_SSLWantReadError = _ssl.SSLWantReadError
_SSLWantWriteError = _ssl.SSLWantWriteError
_std_read = _ssl.SSLSocket.read
_std_write = _ssl.SSLSocket.write


class SSLSocket(_ssl.SSLSocket, _GreenSocket):
    """A TLS socket over a green socket: `ssl.SSLSocket`'s API, parking instead of blocking.

    Create it with `wrap_ssl` (or ``context.wrap_socket`` after `dhaga.monkey.patch_ssl`).
    """

    def _ssl_call(self, op: str, fn: Callable[..., Any], *args: Any, block: bool = False) -> Any:
        """Call a TLS operation until it stops asking to wait, honouring the timeout."""
        timeout = self._timeout
        if block and timeout == 0.0:
            timeout = None
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            try:
                return fn(*args)
            except _SSLWantReadError:
                if timeout == 0.0:
                    raise
                write = False
            except _SSLWantWriteError:
                if timeout == 0.0:
                    raise
                write = True
            left = None if deadline is None else max(0.0, deadline - monotonic())
            if not self._wait_fd(self.fileno(), write, left):
                raise TimeoutError(f"The {op} operation timed out")

    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002 - stdlib's name
        """Read up to ``len`` decrypted bytes (into ``buffer`` if given).

        Args:
            len: the most bytes to read.
            buffer: a writable buffer to read into.

        Returns:
            the bytes read, or (with ``buffer``) how many were read.
        """
        return self._ssl_call("read", _std_read, self, len, buffer)

    def write(self, data: Any) -> int:
        """Encrypt and write ``data``; return how many bytes were taken.

        Args:
            data: a bytes-like object.

        Returns:
            how many bytes of ``data`` were taken.
        """
        return self._ssl_call("write", _std_write, self, data)

    def send(self, data: Any, flags: int = 0) -> int:
        self._checkClosed()
        if self._sslobj is None:
            return _GreenSocket.send(self, data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {self.__class__}")
        return self.write(data)

    def do_handshake(self, block: bool = False) -> None:
        """Run the TLS handshake, parking while it waits for the peer.

        Args:
            block: on a non-blocking socket (timeout 0.0), park until the handshake is done
                anyway; without it such a socket raises ``ssl.SSLWantReadError`` or
                ``ssl.SSLWantWriteError`` as the stdlib's does.

        Raises:
            ssl.SSLError: the handshake failed.
            TimeoutError: the socket's timeout expired first.
        """
        self._check_connected()
        self._ssl_call("handshake", self._sslobj.do_handshake, block=block)  # type: ignore[union-attr]

    def unwrap(self) -> Any:
        """Send and await the TLS close_notify; return the plain socket left underneath.

        Returns:
            the plain socket.

        Raises:
            ValueError: the socket has no TLS layer.
            TimeoutError: the socket's timeout expired first.
        """
        if not self._sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        sock = self._ssl_call("shutdown", self._sslobj.shutdown)
        self._sslobj = None
        return sock

    def accept(self) -> tuple[SSLSocket, Any]:
        """Accept a connection and wrap it server-side with this socket's context.

        Returns:
            ``(tls_socket, address)``; the handshake is done (unless ``do_handshake_on_connect``
            is False).

        Raises:
            ssl.SSLError: the handshake failed (the new connection is closed).
        """
        newsock, addr = _GreenSocket.accept(self)
        try:
            tls = wrap_ssl(newsock, self.context, server_side=True,
                           do_handshake_on_connect=self.do_handshake_on_connect,
                           suppress_ragged_eofs=self.suppress_ragged_eofs)
        except BaseException:
            newsock.close()
            raise
        return tls, addr

    def dup(self) -> Any:
        raise NotImplementedError(f"Can't dup() {self.__class__.__name__} instances")


def wrap_ssl(
    sock: Any,
    context: _ssl.SSLContext,
    server_side: bool = False,
    server_hostname: str | None = None,
    *,
    do_handshake_on_connect: bool = True,
    suppress_ragged_eofs: bool = True,
    session: _ssl.SSLSession | None = None,
) -> SSLSocket:
    """Wrap a (connected or not) socket in TLS, as ``context.wrap_socket`` does.

    A connected socket does its handshake at once (unless ``do_handshake_on_connect`` is
    False); an unconnected client does it in ``connect``. A plain `socket.socket` is made green
    first. The original socket object is detached, as with the standard library.

    Args:
        sock: a green or plain socket, connected or not.
        context: the `ssl.SSLContext` to use.
        server_side: act as the server of the handshake.
        server_hostname: the name to check the server's certificate against (and to send
            as SNI); required by a context with ``check_hostname``.
        do_handshake_on_connect: do the handshake at once (or on ``connect``).
        suppress_ragged_eofs: report an unclean TLS end as end-of-file, as the stdlib does.
        session: a session to resume.

    Returns:
        the TLS socket, a `SSLSocket`.

    Raises:
        ssl.SSLError: the handshake failed (bad certificate, wrong protocol...).
        TimeoutError: the socket's timeout expired during the handshake.
    """
    if not isinstance(sock, _GreenSocket):
        timeout = sock.gettimeout()
        sock = _GreenSocket(sock.family, sock.type, sock.proto, sock.detach())
        sock.settimeout(timeout)
    return SSLSocket._create(
        sock=sock,
        server_side=server_side,
        do_handshake_on_connect=do_handshake_on_connect,
        suppress_ragged_eofs=suppress_ragged_eofs,
        server_hostname=server_hostname,
        context=context,
        session=session,
    )
