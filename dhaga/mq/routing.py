"""Routing strategies: where each socket type sends a message and which pipe it reads next.

How this works
--------------
One strategy object per socket holds its pipes and answers two non-blocking questions:
``send(msg)`` (a true value: done, sent or dropped as the type requires; false: it would
block) and ``recv()`` (a message, or None: it would block). The socket does the waiting.
Pipes tell the strategy ``_readable(pipe)`` when their inbound queue turns non-empty, and
``_writable(pipe)`` when a full outbound queue has room again; the strategy then signals the
socket, which wakes one waiting dhaga.

The building blocks are libzmq's: *fair queueing* (``_fq_recv``: the pipes with inbound
messages wait in a ring, ``ready``; each read takes one message and moves its pipe to the back)
and *load balancing* (``_lb_send``: round robin over the ``active`` pipes; a full pipe leaves
the ring until it has room). A pipe whose connection ended stays in ``ready`` until its inbound
messages are read: nothing delivered to the socket is lost.

This module must not know about transports, sessions, the wire or the scheduler.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from .errors import BadState, HostUnreachable, NotSupported, SocketClosed
from .pipe import Message, Pipe

__all__ = [
    "Strategy", "Pair", "Push", "Pull", "Dealer", "Req", "Rep", "Router", "Closed", "STRATEGIES",
]


class Strategy:
    """The routing rules shared by every socket type; subclasses pick and refine them."""

    kind = ""
    can_send_kind = True
    can_recv_kind = True

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.pipes: list[Pipe] = []
        self.ready: deque[Pipe] = deque()
        self.active: list[Pipe] = []
        self.next = 0

    # ------------------------------------------------------------------ pipes
    def attach(self, pipe: Pipe) -> bool:
        """Take a new pipe; False refuses it (the connection is then dropped)."""
        pipe.owner = self
        self.pipes.append(pipe)
        if self.can_send_kind:
            pipe.out_active = True
            self.active.append(pipe)
            self.sock._signal_out()
        if pipe.inc.q:
            self._readable(pipe)
        return True

    def connected(self, pipe: Pipe) -> None:
        """A session started carrying a pipe (the first time, or after a reconnection)."""

    def terminated(self, pipe: Pipe) -> None:
        """The pipe's connection ended for good; its inbound messages stay readable."""
        pipe.alive = False
        if pipe in self.pipes:
            self.pipes.remove(pipe)
        if pipe.out_active:
            pipe.out_active = False
            if pipe in self.active:
                self.active.remove(pipe)
        if not pipe.in_ready and pipe.inc.q:
            self._readable(pipe)

    def _readable(self, pipe: Pipe) -> None:
        if not pipe.in_ready:
            pipe.in_ready = True
            self.ready.append(pipe)
            self.sock._signal_in()

    def _writable(self, pipe: Pipe) -> None:
        if pipe.alive and not pipe.out_active and pipe in self.pipes:
            pipe.out_active = True
            self.active.append(pipe)
            self.sock._signal_out()

    # ------------------------------------------------------------------ building blocks
    def _fq_recv(self) -> tuple[Pipe, Message] | None:
        """Fair queueing: one message from the pipe whose turn it is; None if none has one."""
        ready = self.ready
        while ready:
            pipe = ready[0]
            q = pipe.inc.q
            if q:
                msg = pipe.read()
                if q:
                    ready.rotate(-1)
                else:
                    ready.popleft()
                    pipe.in_ready = False
                return pipe, msg
            ready.popleft()
            pipe.in_ready = False
        return None

    def _fq_take(self) -> Message | None:
        """`_fq_recv` for types that need not know the pipe (the hot path of PULL, DEALER)."""
        ready = self.ready
        while ready:
            pipe = ready[0]
            c = pipe.inc
            q = c.q
            if q:
                msg = q.popleft()
                if c.full and len(q) <= c.lwm:
                    c.full = False
                    if c.on_room is not None:
                        c.on_room()
                if not q:
                    ready.popleft()
                    pipe.in_ready = False
                elif len(ready) > 1:
                    ready.rotate(-1)
                return msg
            ready.popleft()
            pipe.in_ready = False
        return None

    def _lb_send(self, msg: Message) -> Pipe | None:
        """Load balancing: queue ``msg`` on the next pipe with room; None if none has."""
        active = self.active
        while active:
            i = self.next
            if i >= len(active):
                i = 0
            pipe = active[i]
            c = pipe.outc
            q = c.q
            if c.hwm and len(q) >= c.hwm:
                c.full = True
                pipe.out_active = False
                del active[i]
                self.next = i
                continue
            q.append(msg)
            if len(q) == 1 and c.on_data is not None:
                c.on_data()
            self.next = i + 1
            return pipe
        return None

    # ------------------------------------------------------------------ the socket's questions
    def send(self, msg: Message) -> Any:
        """Queue or drop ``msg`` as the type requires: a true value; false: it would block."""
        raise NotSupported(f"a {self.kind} socket cannot send")

    def recv(self) -> Message | None:
        """The next message for the application; None: it would block."""
        raise NotSupported(f"a {self.kind} socket cannot receive")

    def can_send(self) -> bool:
        return bool(self.active)

    def can_recv(self) -> bool:
        return bool(self.ready)

    def pending(self) -> list[Pipe]:
        """Pipes that still have messages queued to their peers (for linger)."""
        return [p for p in self.pipes if p.outc.q]


class Push(Strategy):
    """PUSH: round robin to the peers with room; blocks when every one is full (or none)."""

    kind = "PUSH"
    can_recv_kind = False

    # The hot path, without a call in between: the pipe chosen (true) or None (would block).
    send = Strategy._lb_send  # type: ignore[assignment]


class Pull(Strategy):
    """PULL: fair-queues what its PUSH peers send."""

    kind = "PULL"
    can_send_kind = False

    recv = Strategy._fq_take

    def can_send(self) -> bool:
        return False


class Dealer(Push):
    """DEALER: round robin out, fair queueing in; no envelope."""

    kind = "DEALER"
    can_recv_kind = True
    recv = Strategy._fq_take


class Pair(Dealer):
    """PAIR: exactly one peer; a second connection is refused."""

    kind = "PAIR"

    def attach(self, pipe: Pipe) -> bool:
        if self.pipes:
            return False
        return super().attach(pipe)


class Req(Dealer):
    """REQ: adds the empty delimiter, round robin, then accepts one reply, from that peer only.

    ``send`` and ``recv`` must alternate (`BadState` otherwise). A reply from another peer, or
    without the delimiter, is dropped, as libzmq does.
    """

    kind = "REQ"

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self.receiving = False
        self.reply_pipe: Pipe | None = None

    def send(self, msg: Message) -> bool:
        if self.receiving:
            raise BadState("a REQ socket must receive the reply before it sends again")
        pipe = self._lb_send([b"", *msg])
        if pipe is None:
            return False
        self.reply_pipe = pipe
        self.receiving = True
        return True

    def recv(self) -> Message | None:
        if not self.receiving:
            raise BadState("a REQ socket must send a request before it receives")
        while True:
            got = self._fq_recv()
            if got is None:
                return None
            pipe, msg = got
            if pipe is self.reply_pipe and len(msg) > 1 and msg[0] == b"":
                self.receiving = False
                self.reply_pipe = None
                return msg[1:]

    def can_send(self) -> bool:
        return not self.receiving and bool(self.active)

    def can_recv(self) -> bool:
        if not self.receiving:
            return False
        ready = self.ready
        while ready:
            pipe = ready[0]
            q = pipe.inc.q
            if q and pipe is self.reply_pipe and len(q[0]) > 1 and q[0][0] == b"":
                return True
            self._fq_recv()  # not the reply we wait for: recv would drop it too
        return False


class Rep(Strategy):
    """REP: fair-queues requests, strips and keeps their envelope, sends the reply back on it.

    ``recv`` and ``send`` must alternate (`BadState` otherwise). A request without the empty
    delimiter is dropped; a reply whose peer is gone or full is dropped (never blocks).
    """

    kind = "REP"

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self.sending = False
        self.reply_pipe: Pipe | None = None
        self.envelope: Message = []

    def recv(self) -> Message | None:
        if self.sending:
            raise BadState("a REP socket must send the reply before it receives again")
        while True:
            got = self._fq_recv()
            if got is None:
                return None
            pipe, msg = got
            try:
                bottom = msg.index(b"")
            except ValueError:
                continue  # no delimiter: not a request
            if bottom + 1 == len(msg):
                continue  # no body
            self.envelope = msg[: bottom + 1]
            self.reply_pipe = pipe
            self.sending = True
            return msg[bottom + 1 :]

    def send(self, msg: Message) -> bool:
        if not self.sending:
            raise BadState("a REP socket must receive a request before it sends")
        pipe = self.reply_pipe
        if pipe is not None and pipe.alive and pipe.writable():
            pipe.write(self.envelope + msg)
        self.sending = False
        self.reply_pipe = None
        self.envelope = []
        return True

    def can_send(self) -> bool:
        return self.sending

    def can_recv(self) -> bool:
        return not self.sending and bool(self.ready)


class Router(Strategy):
    """ROUTER: prefixes each message with its peer's routing id; routes by the first frame.

    A peer that announced no identity gets a generated one (5 bytes: a zero byte and a
    counter, as libzmq). A second peer announcing an identity in use is refused. Sending to
    an unknown identity drops the message, or raises `HostUnreachable` with
    ``router_mandatory``; sending to a full peer drops it, or blocks with ``router_mandatory``.
    """

    kind = "ROUTER"

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self.routes: dict[bytes, Pipe] = {}
        self.counter = int.from_bytes(os.urandom(4), "big")
        self.blocked: Pipe | None = None

    def attach(self, pipe: Pipe) -> bool:
        identity = pipe.identity
        if identity:
            if identity in self.routes:
                return False
        else:
            while True:
                self.counter = (self.counter + 1) & 0xFFFFFFFF
                identity = b"\0" + self.counter.to_bytes(4, "big")
                if identity not in self.routes:
                    break
            pipe.identity = identity
        self.routes[identity] = pipe
        return super().attach(pipe)

    def terminated(self, pipe: Pipe) -> None:
        if self.routes.get(pipe.identity) is pipe:
            del self.routes[pipe.identity]
        super().terminated(pipe)

    def recv(self) -> Message | None:
        got = self._fq_recv()
        if got is None:
            return None
        pipe, msg = got
        return [pipe.identity, *msg]

    def send(self, msg: Message) -> bool:
        identity = msg[0]
        pipe = self.routes.get(identity)
        mandatory = self.sock._router_mandatory
        if pipe is None:
            if mandatory:
                raise HostUnreachable(f"no peer with routing id {identity!r}", identity)
            return True
        if len(msg) == 1:
            return True  # nothing but the address: nothing to send
        if not pipe.writable():
            if mandatory:
                self.blocked = pipe
                return False
            return True
        pipe.write(msg[1:])
        return True

    def _writable(self, pipe: Pipe) -> None:
        super()._writable(pipe)
        if pipe is self.blocked:
            self.blocked = None
            self.sock._signal_out()

    def can_send(self) -> bool:
        return True


class Closed(Strategy):
    """What a closed socket's strategy is replaced with: sending and receiving raise."""

    def send(self, msg: Message) -> bool:
        raise SocketClosed("the socket is closed")

    def recv(self) -> Message | None:
        raise SocketClosed("the socket is closed")

    def can_send(self) -> bool:
        return False

    def can_recv(self) -> bool:
        return False


STRATEGIES: dict[str, type[Strategy]] = {
    cls.kind: cls for cls in (Pair, Push, Pull, Dealer, Req, Rep, Router)
}
