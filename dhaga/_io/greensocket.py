"""The green `socket` class and its constructors: `socket.socket`'s API, parking the dhaga.

How this works
--------------
`socket` subclasses the standard library's `socket.socket`, so ``isinstance(s, socket.socket)``
holds for libraries that check it. Underneath, the OS socket is always in non-blocking mode;
the timeout the user set (None = blocking, 0.0 = non-blocking, or seconds, with exactly the
standard library's meaning) lives in a Python slot. Every blocking method first makes the
system call; only when it fails with EAGAIN does the dhaga park on the descriptor's reader or
writer slot (`dhaga._io.fdwait`), then it tries again. A timeout raises ``TimeoutError("timed
out")`` as the standard library does; a non-blocking socket raises `BlockingIOError`.

One refinement of try-first: on a blocking socket or one with a timeout, a read that returned
less than was asked for (or that timed out) found the kernel's buffer empty, so the next read
would almost surely fail with EAGAIN (and raise inside Python); it
waits for readiness first instead (the registration is kept, so this costs no system call,
and a level-triggered poll reports data that is already there at once) -- unless a green
``select``/``poll`` has just reported the descriptor readable (`fdwait.seen_readable`): its
caller reads because data is there, and waiting would only cost a trip through the loop.

Addresses with host names are resolved through `dhaga._io.dns` before ``connect``/``sendto`` (the C
socket would call the blocking resolver itself). Closing wakes any dhaga waiting on the socket
with ``OSError(EBADF)`` and removes the loop registration before the descriptor is closed.

This module must not know about TLS, servers or the scheduler's internals (it parks only
through `dhaga._io.fdwait`).
"""

from __future__ import annotations

import _socket
import builtins
import errno
import os
import socket as _stdsocket
from threading import get_ident as _get_ident
from time import monotonic
from typing import Any

from .._core.threads import _local, get_scheduler
from . import dns as _dns
from .fdwait import _close_watcher, _Watcher, notify_close, watcher_for

__all__ = ["socket", "create_connection", "socketpair", "fromfd"]

_csock = _socket.socket
_recv = _csock.recv
_recv_into = _csock.recv_into
_recvfrom = _csock.recvfrom
_recvfrom_into = _csock.recvfrom_into
_recvmsg = _csock.recvmsg
_recvmsg_into = _csock.recvmsg_into
_send = _csock.send
_sendto = _csock.sendto
_sendmsg = _csock.sendmsg
_sendall = _csock.sendall
_connect_ex = _csock.connect_ex
_accept = _csock._accept
_fileno = _csock.fileno
_c_gettimeout = _csock.gettimeout
_c_setblocking = _csock.setblocking
_c_family = _csock.__dict__["family"].__get__
_c_type = _csock.__dict__["type"].__get__
_c_proto = _csock.__dict__["proto"].__get__

_AF_INET = _stdsocket.AF_INET
_AF_INET6 = _stdsocket.AF_INET6
_CONNECTING = (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK)
_GLOBAL_DEFAULT_TIMEOUT: Any = _stdsocket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
_GiveupOnSendfile = _stdsocket._GiveupOnSendfile  # type: ignore[attr-defined]


def _timeout_error() -> TimeoutError:
    return TimeoutError("timed out")


#: What `GreenSocket._read_after_wait` returns when its wait timed out (the caller raises).
_WAIT_EXPIRED: Any = object()


def _check_timeout(value: Any) -> float | None:
    """Validate a timeout as `socket.settimeout` does."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer or float")
    value = float(value)
    if value != value:
        raise ValueError("Invalid value NaN (not a number)")
    if value < 0:
        raise ValueError("Timeout value out of range")
    return value


class socket(_stdsocket.socket):  # noqa: N801 - the standard library's name
    """A socket whose blocking calls park the calling dhaga instead of the OS thread.

    Same constructor, methods, return values and exceptions as `socket.socket`; ``settimeout``,
    ``setblocking`` and the default timeout keep their meaning.

    Args:
        family: the address family (``AF_INET`` by default, or taken from ``fileno``).
        type: the socket type (``SOCK_STREAM`` by default).
        proto: the protocol number (usually 0).
        fileno: adopt this already open descriptor instead of making a new one.
    """

    __slots__ = ("_timeout", "_short", "_w")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,  # noqa: A002
                 fileno: int | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        self._timeout: float | None = _c_gettimeout(self)
        self._short = False  # the last read returned less than asked: the buffer is empty
        self._w: _Watcher | None = None  # this descriptor's watcher, kept while the socket lives
        _c_setblocking(self, False)

    def __del__(self) -> None:
        if _fileno(self) >= 0:
            try:
                self._forget_fd()
            except Exception:  # noqa: BLE001 - a loop already gone (interpreter shutdown)
                pass
        _csock.__del__(self)

    def _forget_fd(self) -> None:
        """Wake this descriptor's waiters with EBADF and unregister it, before it is closed."""
        fd = _fileno(self)
        if fd >= 0:
            notify_close(fd)
        w = self._w
        self._w = None
        if w is not None and not w.closed:
            _close_watcher(w)

    # ------------------------------------------------------------------ timeouts
    def settimeout(self, value: float | None) -> None:
        """Set the timeout of blocking operations: None blocks, 0.0 never blocks.

        Args:
            value: seconds, None (block until done) or 0.0 (non-blocking).

        Raises:
            ValueError: ``value`` is negative.
        """
        self._timeout = _check_timeout(value)

    def gettimeout(self) -> float | None:
        """The timeout in seconds, or None when the socket blocks without limit."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """``setblocking(True)`` is ``settimeout(None)``; ``False`` is ``settimeout(0.0)``.

        Args:
            flag: True to block (park) until done, False for non-blocking calls.
        """
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        """False only when the timeout is 0.0."""
        return self._timeout != 0.0

    @property
    def timeout(self) -> float | None:  # type: ignore[override]
        return self._timeout

    # ------------------------------------------------------------------ waiting
    def _wait_fd(self, fd: int, write: bool, timeout: float | None) -> bool:
        """Park until ready (True) or ``timeout`` (False), through this socket's watcher."""
        sched = getattr(_local, "sched", None)
        if sched is None or sched._current is None:  # not in a dhaga: the general look-up
            sched = get_scheduler()
        w = self._w
        if w is None or w.closed or w.fd != fd or w.sched is not sched:
            w = self._w = watcher_for(fd, sched)
        return w.wait(write, timeout)

    def _retry(self, write: bool, fn: Any, *args: Any) -> Any:
        """Wait for readiness and call ``fn(self, *args)`` until it stops raising EAGAIN."""
        timeout = self._timeout
        fd = _fileno(self)
        if timeout is None:
            while True:
                self._wait_fd(fd, write, None)
                try:
                    return fn(self, *args)
                except BlockingIOError:
                    pass
        deadline = monotonic() + timeout
        left = timeout
        while True:
            if not self._wait_fd(fd, write, left):
                if not write:
                    self._short = True  # nothing came: the next read waits before it tries
                raise _timeout_error()
            try:
                return fn(self, *args)
            except BlockingIOError:
                pass
            left = max(0.0, deadline - monotonic())

    def _resolve(self, address: Any) -> Any:
        """Resolve a host name in an (host, port, ...) address without blocking the loop."""
        if type(address) is not tuple or len(address) < 2:
            return address
        family = _c_family(self)
        if family != _AF_INET and family != _AF_INET6:
            return address
        host = address[0]
        if _dns.is_numeric_host(host) or host == "<broadcast>":
            return address
        info = _dns.getaddrinfo(host, address[1], family, _c_type(self), _c_proto(self))
        if not info:
            raise _stdsocket.gaierror(f"getaddrinfo returned no address for {host!r}")
        sockaddr = info[0][4]
        if family == _AF_INET6 and len(address) > 2:
            sockaddr = sockaddr[:2] + tuple(address[2:])
        return sockaddr

    # ------------------------------------------------------------------ connecting
    def _connect(self, address: Any, raise_timeout: bool) -> int:
        address = self._resolve(address)
        err = _connect_ex(self, address)
        if err == 0 or err not in _CONNECTING or self._timeout == 0.0:
            return err
        timeout = self._timeout
        deadline = None if timeout is None else monotonic() + timeout
        fd = _fileno(self)
        while True:
            left = None if deadline is None else max(0.0, deadline - monotonic())
            if not self._wait_fd(fd, True, left):
                if raise_timeout:
                    raise _timeout_error()
                return errno.EWOULDBLOCK
            if err == errno.EWOULDBLOCK:  # a Unix socket whose listener's backlog was full
                err = _connect_ex(self, address)
                if err != errno.EWOULDBLOCK:
                    return err
                continue
            return self.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_ERROR)

    def connect(self, address: Any) -> None:
        """Connect to ``address``; parks while the connection is being made.

        Args:
            address: the peer's address (``(host, port)`` for TCP; a host name is resolved without
                blocking the loop).

        Raises:
            OSError: the connection failed (``ConnectionRefusedError`` and the like).
            TimeoutError: the socket's timeout expired first.
        """
        err = self._connect(address, True)
        if err:
            raise OSError(err, os.strerror(err))  # OSError picks the errno's subclass

    def connect_ex(self, address: Any) -> int:
        """Like `connect`, but return the error number (0 on success) instead of raising.

        Args:
            address: the peer's address.

        Returns:
            0 on success, else the ``errno`` of the failure.
        """
        return self._connect(address, False)

    def accept(self) -> tuple[socket, Any]:
        """Wait for a connection; return ``(socket, address)``, the new socket green too.

        Returns:
            ``(socket, address)``: the connected green socket and the peer's address.

        Raises:
            TimeoutError: the socket's timeout expired first.
            OSError: accepting failed (``EMFILE`` when out of descriptors...).
        """
        try:
            fd, addr = _accept(self)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
            fd, addr = self._retry(False, _accept)
        return socket(_c_family(self), _c_type(self), _c_proto(self), fd), addr

    # ------------------------------------------------------------------ receiving
    def _wait_after_short_read(self) -> None:
        """A blocking socket whose last read was short: wait for data before trying again."""
        self._short = False
        w = self._w
        if w is not None and not w.closed:
            if w.r_seen:  # a green select/poll has just reported data: read it at once
                w.r_seen = False
                return
            sched = w.sched
            if sched._thread_id == _get_ident() and sched._current is not None:
                w.wait_read()  # a dhaga of the watcher's own scheduler: the hot path
                return
        fd = _fileno(self)
        if fd >= 0:
            self._wait_fd(fd, False, None)

    def _read_after_wait(self, fn: Any, *args: Any) -> Any:
        """A socket with a timeout whose last read was short or timed out: the buffer was
        empty then, so wait for data first instead of a read the kernel answers with EAGAIN
        (data that came since is reported by the loop's next poll).

        Returns:
            what ``fn`` returned, or `_WAIT_EXPIRED` if that first wait timed out.

        Raises:
            TimeoutError: the wait for a read that came up short again timed out.
        """
        w = self._w
        if w is not None and w.r_seen:  # a green select/poll has just reported data: read it
            w.r_seen = False
            self._short = False
            try:
                return fn(self, *args)
            except BlockingIOError:
                return self._retry(False, fn, *args)
        timeout: float = self._timeout  # type: ignore[assignment]
        deadline = monotonic() + timeout
        if (w is not None and not w.closed and w.sched._current is not None
                and w.sched._thread_id == _get_ident()):
            # a dhaga of the watcher's thread: the hot path (registered, nobody else reading:
            # straight to the slot)
            if w.r_on and w.reader is None:
                if not w.park_reader_timed(timeout, w.r_what):
                    return _WAIT_EXPIRED  # and it stays empty; the caller raises
            elif not w.wait_read_timed(timeout):
                return _WAIT_EXPIRED
            fd = w.fd
        else:
            fd = _fileno(self)
            if fd < 0:
                return fn(self, *args)  # closed: the read raises as the standard library's does
            if not self._wait_fd(fd, False, timeout):
                raise _timeout_error()
        self._short = False
        while True:
            try:
                return fn(self, *args)
            except BlockingIOError:
                pass
            if not self._wait_fd(fd, False, max(0.0, deadline - monotonic())):
                self._short = True
                raise _timeout_error()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._short:
            if self._timeout is None:
                # _wait_after_short_read's hot path, written out (a server's wait for the next
                # request on a kept-alive connection)
                w = self._w
                if (w is not None and not w.closed and not w.r_seen
                        and w.sched._current is not None and w.sched._thread_id == _get_ident()):
                    self._short = False
                    if w.r_on and w.reader is None:  # registered, nobody else reading
                        w.park_reader(w.r_what)
                    else:
                        w.wait_read()
                else:
                    self._wait_after_short_read()
            elif self._timeout and not flags:
                data = self._read_after_wait(_recv, bufsize, flags)
                if data is _WAIT_EXPIRED:  # raised here: one frame fewer to unwind
                    raise TimeoutError("timed out")
                if 0 < len(data) < bufsize:
                    self._short = True
                return data
        try:
            data = _recv(self, bufsize, flags)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
            data = self._retry(False, _recv, bufsize, flags)
        if 0 < len(data) < bufsize and not flags:
            self._short = True
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self._short:
            if self._timeout is None:
                self._wait_after_short_read()
            elif self._timeout and not flags:
                n = self._read_after_wait(_recv_into, buffer, nbytes, flags)
                if n is _WAIT_EXPIRED:
                    raise TimeoutError("timed out")
                if 0 < n < (nbytes or len(buffer)):
                    self._short = True
                return n
        try:
            n = _recv_into(self, buffer, nbytes, flags)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
            n = self._retry(False, _recv_into, buffer, nbytes, flags)
        if 0 < n < (nbytes or len(buffer)) and not flags:
            self._short = True
        return n

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        try:
            return _recvfrom(self, bufsize, flags)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry(False, _recvfrom, bufsize, flags)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        try:
            return _recvfrom_into(self, buffer, nbytes, flags)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry(False, _recvfrom_into, buffer, nbytes, flags)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Any:
        try:
            return _recvmsg(self, bufsize, ancbufsize, flags)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry(False, _recvmsg, bufsize, ancbufsize, flags)

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> Any:
        try:
            return _recvmsg_into(self, buffers, ancbufsize, flags)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry(False, _recvmsg_into, buffers, ancbufsize, flags)

    # ------------------------------------------------------------------ sending
    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return _send(self, data, flags)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry(True, _send, data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send every byte of ``data``; the timeout bounds the whole call, as in the stdlib.

        Args:
            data: a bytes-like object.
            flags: as for `socket.socket.send`.

        Raises:
            TimeoutError: the socket's timeout expired before every byte was sent.
            OSError: the connection failed (``BrokenPipeError``, ``ConnectionResetError``...).
        """
        timeout = self._timeout
        if timeout == 0.0:
            return _sendall(self, data, flags)
        try:
            sent = _send(self, data, flags)
        except BlockingIOError:
            sent = 0
        if type(data) is bytes and sent == len(data):
            return None
        deadline = None if timeout is None else monotonic() + timeout
        fd = _fileno(self)
        with memoryview(data) as whole, whole.cast("B") as view:
            total = len(view)
            while sent < total:
                try:
                    sent += _send(self, view[sent:], flags)
                    continue
                except BlockingIOError:
                    pass
                left = None if deadline is None else max(0.0, deadline - monotonic())
                if not self._wait_fd(fd, True, left):
                    raise _timeout_error()
        return None

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        if addr is None:
            args: tuple = (data, self._resolve(flags_or_addr))
        else:
            args = (data, flags_or_addr, self._resolve(addr))
        try:
            return _sendto(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry(True, _sendto, *args)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        args = (buffers, ancdata, flags) if address is None else (
            buffers, ancdata, flags, self._resolve(address))
        try:
            return _sendmsg(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry(True, _sendmsg, *args)

    def _sendfile_use_sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """`socket.sendfile`'s zero-copy path, waiting on the loop instead of ``poll``."""
        self._check_sendfile_params(file, offset, count)
        sockno = _fileno(self)
        try:
            fileno = file.fileno()
            fsize = os.fstat(fileno).st_size
        except (AttributeError, OSError, ValueError) as err:
            raise _GiveupOnSendfile(err) from err  # not a regular file
        if not fsize:
            return 0
        blocksize = min(count or fsize, 2 ** 30)
        timeout = self._timeout
        if timeout == 0:
            raise ValueError("non-blocking sockets are not supported")
        deadline = None if timeout is None else monotonic() + timeout
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = count - total_sent
                    if blocksize <= 0:
                        break
                try:
                    sent = os.sendfile(sockno, fileno, offset, blocksize)
                except BlockingIOError:
                    left = None if deadline is None else max(0.0, deadline - monotonic())
                    if not self._wait_fd(sockno, True, left):
                        raise _timeout_error() from None
                    continue
                except OSError as err:
                    if total_sent == 0:
                        raise _GiveupOnSendfile(err) from err  # fall back on plain send()
                    raise err from None
                if sent == 0:
                    break  # end of file
                offset += sent
                total_sent += sent
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset)

    # ------------------------------------------------------------------ closing
    def _real_close(self, _ss: Any = _csock) -> None:
        self._forget_fd()
        _ss.close(self)

    def detach(self) -> int:
        """Forget the descriptor (waiters are woken with EBADF) and return it, still open.

        The descriptor stays in non-blocking mode.

        Returns:
            the file descriptor, now yours to close.
        """
        self._forget_fd()
        return super().detach()


# ---------------------------------------------------------------------- constructors
def socketpair(family: int | None = None, type: int = _stdsocket.SOCK_STREAM,  # noqa: A002
               proto: int = 0) -> tuple[socket, socket]:
    """A pair of connected green sockets, as `socket.socketpair`.

    Args:
        family: ``AF_UNIX`` by default where available.
        type: the socket type.
        proto: the protocol number.

    Returns:
        two connected green sockets.
    """
    if family is None:
        family = _stdsocket.AF_UNIX
    a, b = _socket.socketpair(family, type, proto)
    return (socket(family, type, proto, a.detach()), socket(family, type, proto, b.detach()))


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket:  # noqa: A002
    """A green socket on a duplicate of ``fd``, as `socket.fromfd`.

    Args:
        fd: an open file descriptor (duplicated; the original stays yours).
        family: its address family.
        type: its socket type.
        proto: its protocol number.

    Returns:
        a green `socket`.
    """
    return socket(family, type, proto, os.dup(fd))


def create_connection(
    address: tuple[str, int],
    timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
    source_address: Any = None,
    *,
    all_errors: bool = False,
) -> socket:
    """Connect to a TCP ``(host, port)``, trying every address it resolves to, as the stdlib.

    Name resolution parks the dhaga instead of blocking the loop.

    Args:
        address: ``(host, port)``.
        timeout: the new socket's timeout (also bounding the connection); by default the
            global default timeout, as in the stdlib.
        source_address: ``(host, port)`` to bind to before connecting.
        all_errors: raise an ``ExceptionGroup`` of every attempt's error, not just the last.

    Returns:
        a connected green `socket`.

    Raises:
        OSError: every address failed (``socket.gaierror`` when the name did not resolve).
        TimeoutError: the timeout expired first.
    """
    host, port = address
    exceptions: list[OSError] = []
    for af, socktype, proto, _canon, sa in _dns.getaddrinfo(host, port, 0, _stdsocket.SOCK_STREAM):
        sock = None
        try:
            sock = socket(af, socktype, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sa)
            exceptions.clear()
            return sock
        except OSError as exc:
            if not all_errors:
                exceptions.clear()
            exceptions.append(exc)
            if sock is not None:
                sock.close()
    if exceptions:
        try:
            group = getattr(builtins, "ExceptionGroup", None)  # Python 3.11+
            if not all_errors or group is None:
                raise exceptions[0]
            raise group("create_connection failed", exceptions)
        finally:
            exceptions.clear()
    raise OSError("getaddrinfo returns an empty list")
