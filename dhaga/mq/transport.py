"""The ``tcp://`` and ``ipc://`` transports: listening, connecting, reconnecting with backoff.

How this works
--------------
`bind` opens a listening green socket and an accept loop (`dhaga._io.listen`'s `Acceptor`, with
the EMFILE policy every server shares) that runs a `Session` in a new dhaga per connection. `connect` gives the socket a persistent pipe at once (ROUTER excepted:
its pipes are named by the peer's identity, known only after the handshake), so messages queue
before the connection is up, then runs a connect loop (a dhaga): connect, run the session in
the same dhaga until it ends, wait ``reconnect_ivl`` (plus up to as much again of random jitter,
or doubling up to ``reconnect_ivl_max``, as libzmq 4.3 does), and start again. A peer that
refused us with an ERROR command is not retried.

This module must not know the wire protocol or how socket types route.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket as _stdsocket
import tempfile
from typing import Any

from .. import net
from .._io.listen import Acceptor, set_nodelay
from .._io.listen import bind as _bind_socket
from ..scheduler import sleep, spawn
from .session import Session

__all__ = ["bind", "connect", "parse"]

log = logging.getLogger("dhaga.mq")


def parse(endpoint: str, binding: bool) -> tuple[int, Any]:
    """Split a tcp/ipc endpoint into a socket family and address.

    ``tcp://*:port`` binds every interface; port ``*`` or 0 binds a free port; ``[::1]`` is an
    IPv6 host. ``ipc://@name`` is Linux's abstract namespace; ``ipc://*`` (bind only) makes a
    fresh path in a new temporary directory.

    Raises:
        ValueError: malformed endpoint.
    """
    scheme, _, rest = endpoint.partition("://")
    if scheme == "ipc":
        if rest == "*" and binding:
            return _stdsocket.AF_UNIX, "*"
        return _stdsocket.AF_UNIX, "\0" + rest[1:] if rest.startswith("@") else rest
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host:
        raise ValueError(f"malformed tcp endpoint {endpoint!r}: expected tcp://host:port")
    if port_text == "*":
        port = 0
    else:
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"bad port {port_text!r} in {endpoint!r}") from None
        if not 0 <= port <= 65535 or (port == 0 and not binding):
            raise ValueError(f"bad port {port} in {endpoint!r}")
    family = _stdsocket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        host, family = host[1:-1], _stdsocket.AF_INET6
    elif ":" in host:
        family = _stdsocket.AF_INET6
    if host == "*":
        host = "::" if family == _stdsocket.AF_INET6 else "0.0.0.0"
    return family, (host, port)


def _describe(family: int, address: Any) -> str:
    if family == _stdsocket.AF_UNIX:
        if isinstance(address, bytes):
            address = address.decode("utf-8", "replace")
        return "ipc://" + ("@" + address[1:] if address.startswith("\0") else address)
    host, port = address[:2]
    return f"tcp://[{host}]:{port}" if family == _stdsocket.AF_INET6 else f"tcp://{host}:{port}"


class _Listener:
    """A bound endpoint: its listening socket, accept loop and the sessions it started."""

    def __init__(self, sock: Any, endpoint: str) -> None:
        family, address = parse(endpoint, binding=True)
        self.sock = sock
        self._tmpdir: str | None = None
        self._path: str | None = None
        if family == _stdsocket.AF_UNIX and address == "*":
            self._tmpdir = tempfile.mkdtemp(prefix="dhaga-mq-")
            address = os.path.join(self._tmpdir, "socket")
        elif family == _stdsocket.AF_UNIX and not address.startswith("\0"):
            self._path = address
        try:
            listener = _bind_socket(address, family=family)
        except BaseException:
            self._path = None  # not ours: binding failed
            self._remove_files()
            raise
        self._listener = listener
        self.endpoint = _describe(family, listener.getsockname())
        self.sessions: set[Session] = set()
        self._acceptor = Acceptor(listener, self._accepted, name=f"mq {self.endpoint}",
                                  logger=log)
        self._acceptor.start()

    def _accepted(self, stream: Any, address: Any) -> None:
        ipc = self._path or self._tmpdir
        peer = self.endpoint if ipc else _describe(stream.family, address)
        session = Session(self.sock, stream, peer)
        self.sessions.add(session)
        d = spawn(self._serve, session)
        d.name = f"mq-session {peer}"

    def _serve(self, session: Session) -> None:
        try:
            session.run()
        finally:
            self.sessions.discard(session)
            self._acceptor.connection_closed()

    def stop_accepting(self) -> None:
        """Stop taking connections; established ones go on."""
        self._acceptor.stop()
        self._remove_files()

    def close(self) -> None:
        """Stop accepting and drop every connection made through this endpoint."""
        self.stop_accepting()
        for session in list(self.sessions):
            session.stop()
        self.sessions.clear()

    def _remove_files(self) -> None:
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass
            self._path = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


class _Connecter:
    """A connected endpoint: its persistent pipe and its connect-and-reconnect loop."""

    def __init__(self, sock: Any, endpoint: str) -> None:
        self.family, self.address = parse(endpoint, binding=False)
        self.sock = sock
        self.endpoint = endpoint
        self.session: Session | None = None
        self.pipe = None
        if sock.kind != "ROUTER":
            pipe = sock._new_pipe(endpoint, persistent=True)
            if sock._attach(pipe):
                self.pipe = pipe
            else:
                log.warning("%s socket: not connecting to %s: it has its one peer already",
                            sock.kind, endpoint)
                self._loop = None
                return
        self._loop = spawn(self._run)
        self._loop.name = f"mq-connect {endpoint}"

    def _open(self) -> Any:
        stream = net.socket(self.family, _stdsocket.SOCK_STREAM)
        try:
            stream.connect(self.address)
            set_nodelay(stream)
        except BaseException:
            stream.close()
            raise
        return stream

    def _run(self) -> None:
        sock = self.sock
        current = -1
        try:
            while True:
                try:
                    stream = self._open()
                except OSError as exc:
                    log.debug("%s socket: connecting to %s failed: %s", sock.kind,
                              self.endpoint, exc)
                else:
                    self.session = session = Session(sock, stream, self.endpoint, self.pipe)
                    try:
                        session.run()
                    finally:
                        self.session = None
                    if session.refused:
                        log.warning("%s socket: %s refused us; not reconnecting", sock.kind,
                                    self.endpoint)
                        return
                    if session.handshaken:
                        current = -1
                ivl, ivl_max = sock.reconnect_ivl, sock.reconnect_ivl_max
                if ivl < 0:
                    return
                if ivl_max > ivl:
                    current = ivl if current < 0 else min(current * 2, ivl_max)
                    delay = current
                else:
                    delay = ivl + (random.randrange(ivl) if ivl > 0 else 0)
                sleep(delay / 1000)
        finally:
            if self.pipe is not None:
                sock._terminated(self.pipe)

    def stop_accepting(self) -> None:
        pass

    def close(self) -> None:
        """Stop connecting and drop the connection."""
        if self._loop is not None and not self._loop.done():
            self._loop.kill(block=False)
        if self.session is not None:
            self.session.stop()
        if self.pipe is not None:
            self.sock._terminated(self.pipe)


def bind(sock: Any, endpoint: str) -> _Listener:
    """Listen at a tcp:// or ipc:// endpoint for ``sock``."""
    return _Listener(sock, endpoint)


def connect(sock: Any, endpoint: str) -> _Connecter:
    """Connect ``sock`` to a tcp:// or ipc:// endpoint, reconnecting whenever it drops."""
    return _Connecter(sock, endpoint)
