"""The ``inproc://`` transport: sockets of one thread joined by pipes, with no bytes at all.

How this works
--------------
A bound name maps to its socket in a process-wide registry. Connecting makes a pair of pipes
sharing their two channels crosswise: a message goes from one socket's strategy into the
other's inbound queue as the same list object. A connect to a name
not bound yet gets its pipe at once, so messages queue (up to ``sndhwm``); the binder takes the
other end when it binds. The high-water mark of each direction is the sender's ``sndhwm`` plus
the receiver's ``rcvhwm``, as in libzmq. Routing ids are exchanged as a ZMTP handshake would.
Both sockets must belong to the same OS thread (dhagas are the unit of concurrency here).

This module must not know how a socket type routes, or anything about the wire.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from typing import Any

from ..codecs.zmtp import compatible
from .errors import NotSupported
from .pipe import Channel, Pipe, sum_hwm

__all__ = ["bind", "connect"]

log = logging.getLogger("dhaga.mq")

_lock = threading.Lock()
_bound: dict[str, _Binding] = {}
_waiting: dict[str, list[_Connection]] = {}


class _Connection:
    """One connect: the connecting socket's pipe, and the binder's once it is bound."""

    def __init__(self, sock: Any, name: str) -> None:
        self.sock = sock
        self.name = name
        self.endpoint = "inproc://" + name
        self.ours: Pipe | None = None
        self.theirs: Pipe | None = None
        self.binding: _Binding | None = None

    def join(self, binding: _Binding) -> None:
        """Connect our pipe (made already, or now) to the bound socket's.

        Raises:
            NotSupported: the two sockets belong to different OS threads.
        """
        a, b = self.sock, binding.sock
        if b._sched is not a._sched:
            self._drop_ours()
            raise NotSupported("inproc:// joins sockets of one OS thread; use ipc:// or tcp://")
        if not compatible(a.kind, b.kind):
            log.warning("inproc://%s: a %s socket cannot connect to a %s socket; not connected",
                        self.name, a.kind, b.kind)
            self._drop_ours()
            return
        if self.ours is None:
            self._make_ours(attach=False)
        ours = self.ours
        assert ours is not None
        if ours.owner is None:  # not attached yet: a ROUTER names it by the peer's identity
            ours.identity = b.routing_id
            ours.owner = a._strategy
            if not a._attach(ours):
                log.warning("inproc://%s: the %s socket refused the connection", self.name, a.kind)
                return
        ab, ba = ours.outc, ours.inc
        ab.hwm = sum_hwm(a.sndhwm, b.rcvhwm)
        ba.hwm = sum_hwm(b.sndhwm, a.rcvhwm)
        ab.lwm, ba.lwm = ab.hwm // 2, ba.hwm // 2
        theirs = Pipe(b._strategy, ab, ba, self.endpoint)
        theirs.identity = a.routing_id
        theirs.peer_type = a.kind
        theirs.connected = ours.connected = True
        ours.peer_type = b.kind
        self.theirs = theirs
        self.binding = binding
        binding.connections.append(self)
        if not b._attach(theirs):
            log.warning("inproc://%s: the %s socket refused a connection", self.name, b.kind)
            self.close()
            return
        b._strategy.connected(theirs)
        if ours.alive:
            a._strategy.connected(ours)

    def _make_ours(self, attach: bool) -> None:
        """Make our pipe; attach it now (messages may queue in it) unless ``attach`` is False
        or we are a ROUTER, which can name the pipe only once the peer is known."""
        a = self.sock
        ours = Pipe(None, Channel(a.rcvhwm), Channel(a.sndhwm), self.endpoint)
        self.ours = ours
        if attach and a.kind != "ROUTER":
            ours.owner = a._strategy
            a._attach(ours)

    def _drop_ours(self) -> None:
        if self.ours is not None and self.ours.owner is not None:
            self.sock._terminated(self.ours)

    def stop_accepting(self) -> None:
        pass

    def close(self) -> None:
        """End the connection both ways; messages already queued stay readable."""
        with _lock:
            waiting = _waiting.get(self.name)
            if waiting and self in waiting:
                waiting.remove(self)
        if self.binding is not None and self in self.binding.connections:
            self.binding.connections.remove(self)
        self._drop_ours()
        if self.theirs is not None:
            self.binding.sock._terminated(self.theirs)  # type: ignore[union-attr]


class _Binding:
    """A bound name and the connections made to it."""

    def __init__(self, sock: Any, name: str) -> None:
        self.sock = sock
        self.name = name
        self.endpoint = "inproc://" + name
        self.connections: list[_Connection] = []

    def stop_accepting(self) -> None:
        with _lock:
            if _bound.get(self.name) is self:
                del _bound[self.name]

    def close(self) -> None:
        self.stop_accepting()
        for conn in list(self.connections):
            conn.close()


def bind(sock: Any, endpoint: str) -> _Binding:
    """Bind ``sock`` to ``inproc://name``; connections waiting for the name join it.

    Raises:
        OSError: EADDRINUSE if the name is bound.
    """
    name = endpoint[len("inproc://"):]
    binding = _Binding(sock, name)
    with _lock:
        if name in _bound:
            raise OSError(errno.EADDRINUSE, f"{os.strerror(errno.EADDRINUSE)}: {endpoint}")
        _bound[name] = binding
        waiting = _waiting.pop(name, [])
    for conn in waiting:
        try:
            conn.join(binding)
        except NotSupported as exc:  # the connecting socket's thread is told nothing: log it
            log.warning("inproc://%s: a %s socket of another thread waited for this name: %s",
                        name, conn.sock.kind, exc)
    return binding


def connect(sock: Any, endpoint: str) -> _Connection:
    """Connect ``sock`` to ``inproc://name``, bound now or later."""
    name = endpoint[len("inproc://"):]
    conn = _Connection(sock, name)
    with _lock:
        binding = _bound.get(name)
        if binding is None:
            _waiting.setdefault(name, []).append(conn)
    if binding is None:
        conn._make_ours(attach=True)
    else:
        conn.join(binding)
    return conn
