"""Pipes: the two one-way queues of whole messages between a socket and one of its peers.

How this works
--------------
A `Channel` is one direction: a deque of messages (each a list of bytes frames), its high-water
mark, and two callbacks. ``on_data`` tells the consumer the deque turned non-empty (only then:
a batch of messages costs one notification); ``on_room`` tells a producer that found the deque
full that it fell to the low-water mark (half the high-water mark, as libzmq).

A `Pipe` is a socket's end of a connection: ``inc`` brings messages from the peer, ``outc``
takes them to it. For ``inproc://`` two sockets' pipes share their channels crosswise (one
socket's ``outc`` is the other's ``inc``), so a message is never copied. For a stream transport
the other end of both channels is a ZMTP session: its reader fills ``inc`` and stops while it
is full; its writer drains ``outc`` whole into one ``sendall``. A connecting socket's pipe
outlives its sessions: messages queue in it before the first connection and across reconnects.

This module must not know about socket types, transports, the wire protocol or the scheduler.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

__all__ = ["Channel", "Pipe", "Message", "sum_hwm"]

#: A message: its frames, in order.
Message = list


class Channel:
    """One direction of a pipe: a FIFO of whole messages from a producer to a consumer.

    Attributes:
        q: the messages waiting for the consumer.
        hwm: how many messages the producer may queue before it must wait or drop (0: no
            limit).
        lwm: the level at which a producer found waiting is told there is room again.
        full: set by a producer that found the channel full; cleared when it is told.
        on_data: called (no arguments) when ``q`` turns non-empty; None when nobody consumes.
        on_room: called when ``q`` falls to ``lwm`` after ``full`` was set; None for nobody.
    """

    __slots__ = ("q", "hwm", "lwm", "full", "on_data", "on_room")

    def __init__(self, hwm: int) -> None:
        self.q: deque[Message] = deque()
        self.hwm = hwm
        self.lwm = hwm // 2
        self.full = False
        self.on_data: Callable[[], Any] | None = None
        self.on_room: Callable[[], Any] | None = None

    def __repr__(self) -> str:
        return f"<Channel {len(self.q)}/{self.hwm or 'inf'}{' full' if self.full else ''}>"


class Pipe:
    """A socket's end of one connection: ``inc`` from the peer, ``outc`` to it.

    Attributes:
        owner: the socket's routing strategy; told ``_readable(pipe)``, ``_writable(pipe)``.
        identity: the peer's routing id as a ROUTER knows it.
        peer_type: the peer's socket type, e.g. ``"PULL"``.
        alive: False once the connection ended for good (its inbound messages stay readable).
        persistent: True for a connecting socket's pipe that waits for reconnections.
        connected: whether a peer takes messages from ``outc`` right now.
        in_ready, out_active: bookkeeping of the routing strategy.
        subs: the peer's subscriptions (for PUB/XPUB), topic -> None.
        sublens: the lengths of those topics, for prefix matching.
        endpoint: where the peer is, for logs.
    """

    __slots__ = (
        "inc", "outc", "owner", "identity", "peer_type", "alive", "persistent", "connected",
        "in_ready", "out_active", "subs", "sublens", "endpoint", "session",
    )  # fmt: skip

    def __init__(self, owner: Any, inc: Channel, outc: Channel, endpoint: str = "") -> None:
        self.inc = inc
        self.outc = outc
        self.owner = owner
        self.identity = b""
        self.peer_type = ""
        self.alive = True
        self.persistent = False
        self.connected = False
        self.in_ready = False
        self.out_active = False
        self.subs: dict[bytes, None] = {}
        self.sublens: set[int] = set()
        self.endpoint = endpoint
        self.session: Any = None
        inc.on_data = self._on_data
        outc.on_room = self._on_room

    def __repr__(self) -> str:
        state = "alive" if self.alive else "ended"
        where = self.endpoint or "inproc"
        return f"<Pipe {where} {self.peer_type} {state} in={self.inc} out={self.outc}>"

    def _on_data(self) -> None:
        self.owner._readable(self)

    def _on_room(self) -> None:
        self.owner._writable(self)

    def read(self) -> Message:
        """Take the next inbound message (the caller checked there is one)."""
        c = self.inc
        q = c.q
        msg = q.popleft()
        if c.full and len(q) <= c.lwm:
            c.full = False
            if c.on_room is not None:
                c.on_room()
        return msg

    def writable(self) -> bool:
        """True if a message may be queued now; if not, the owner is told when it may."""
        c = self.outc
        if c.hwm and len(c.q) >= c.hwm:
            c.full = True
            return False
        return True

    def write(self, msg: Message) -> None:
        """Queue a message to the peer, whatever the high-water mark says."""
        c = self.outc
        q = c.q
        q.append(msg)
        if len(q) == 1 and c.on_data is not None:
            c.on_data()

    def pending_out(self) -> int:
        """Messages queued to the peer and not yet taken by it."""
        return len(self.outc.q)


def sum_hwm(*hwms: int) -> int:
    """The high-water mark of an in-process channel: the sender's plus the receiver's, as in
    libzmq; 0 (no limit) if either is 0."""
    return 0 if 0 in hwms else sum(hwms)
