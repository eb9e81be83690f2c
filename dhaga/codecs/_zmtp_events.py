"""ZMTP events: what a ZMTPConnection reports, as plain values, and the state it reports them in.

This module must not know about bytes: how these values are read from the wire or written to it
is the business of `_zmtp_wire` and `_zmtp_connection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Union


class ConnectionState(Enum):
    """Where the peer's side of a connection is in the ZMTP grammar."""

    GREETING = "greeting"  #: waiting for (the rest of) the peer's 64-byte greeting
    HANDSHAKE = "handshake"  #: greeting done; waiting for the peer's READY
    TRAFFIC = "traffic"  #: the peer's READY arrived; messages and commands flow
    CLOSED = "closed"  #: the peer sent ERROR; further bytes are ignored
    FAILED = "failed"  #: the peer broke the protocol; further bytes raise ProtocolError


@dataclass(frozen=True, slots=True)
class Greeting:
    """The peer's greeting arrived and is acceptable (ZMTP 3.x, our mechanism).

    Attributes:
        major: the peer's ZMTP major version (3).
        minor: its minor version (0 or 1).
        mechanism: its security mechanism (``NULL``, ``PLAIN`` or ``CURVE``).
        as_server: its as-server flag.
    """

    major: int
    minor: int
    mechanism: str
    as_server: bool


@dataclass(frozen=True, slots=True)
class Ready:
    """The peer's READY. Its socket type is not judged here: see compatible().

    Attributes:
        socket_type: the Socket-Type property, e.g. ``"ROUTER"``.
        identity: the Identity property, ``b""`` when absent.
        properties: every property, names lower-cased (they are case-insensitive).
    """

    socket_type: str
    identity: bytes
    properties: dict[str, bytes]


@dataclass(slots=True)  # not frozen: a frozen dataclass takes twice as long to build
class Message:
    """A whole message: its frames in order (a frame may be empty).

    Attributes:
        frames: the frames, in order.
    """

    frames: list[bytes]


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A SUBSCRIBE command (3.1); 3.0 peers send a message instead: see parse_subscription().

    Attributes:
        topic: the prefix subscribed to.
    """

    topic: bytes


@dataclass(frozen=True, slots=True)
class Cancel:
    """A CANCEL command (3.1); 3.0 peers send a message instead: see parse_subscription().

    Attributes:
        topic: the prefix unsubscribed from.
    """

    topic: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A PING (TTL hint in deciseconds): answer ``encode_pong(context)``. As libzmq does, a
    context over 16 bytes is cut to 16, so that it can be echoed.

    Attributes:
        ttl: the peer's time-to-live hint, in deciseconds.
        context: up to 16 bytes to echo in the PONG.
    """

    ttl: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A PONG, echoing the context of one of our PINGs.

    Attributes:
        context: the context of the PING answered.
    """

    context: bytes


@dataclass(frozen=True, slots=True)
class Error:
    """The peer sent ERROR: it refuses the connection for good; close, do not retry as is.

    Attributes:
        reason: the peer's reason, as text.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A well-formed command without meaning here (libzmq ignores these).

    Attributes:
        name: the command's name.
        data: its body.
    """

    name: str
    data: bytes


Event = Union[Greeting, Ready, Message, Subscribe, Cancel, Ping, Pong, Error, UnknownCommand]
