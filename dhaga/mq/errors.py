"""The errors of `dhaga.mq`: its sockets, Binary Star and Clone (all under `MQError`).

This module knows only dhaga's shared errors, which these build on.
"""

from __future__ import annotations

from ..errors import DhagaError, ProtocolError

__all__ = [
    "MQError", "BadState", "HostUnreachable", "NotSupported", "SocketClosed", "SplitBrain",
    "BadMessage",
]  # fmt: skip


class MQError(DhagaError):
    """Base class of the errors a `dhaga.mq.Socket` raises."""


class BadState(MQError, RuntimeError):
    """The call breaks the socket's send/receive order (libzmq's EFSM).

    A REQ socket must alternate ``send`` then ``recv``; a REP socket ``recv`` then ``send``.
    """


class HostUnreachable(MQError, LookupError):
    """A ROUTER with ``router_mandatory`` was asked to send to an identity it has no peer for.

    Attributes:
        routing_id: the identity that has no peer.
    """

    def __init__(self, message: str, routing_id: bytes = b"") -> None:
        super().__init__(message)
        self.routing_id = routing_id


class NotSupported(MQError, TypeError):
    """The socket type cannot do this at all: ``recv`` on PUSH or PUB, ``send`` on PULL or SUB,
    ``subscribe`` on anything but SUB/XSUB (libzmq's ENOTSUP)."""


class SocketClosed(MQError, OSError):
    """The socket was closed: by this call's own socket before or while it waited."""


class SplitBrain(MQError, RuntimeError):
    """A Binary Star pair found itself with two active (or two passive) servers.

    The guide's rule: a server that sees this stops, rather than serve a divided cluster.

    Attributes:
        state: our state when it happened; peer: the state the peer announced.
    """

    def __init__(self, message: str, state: object = None, peer: object = None) -> None:
        super().__init__(message)
        self.state = state
        self.peer = peer


class BadMessage(MQError, ProtocolError):
    """A Clustered Hashmap Protocol message was malformed; it was not applied.

    Attributes:
        reason: what was wrong; frames: the offending message (each frame cut to 64 bytes).
    """

    def __init__(self, reason: str, frames: list[bytes] | None = None) -> None:
        frames = [bytes(f[:64]) for f in frames or []]
        super().__init__(reason, b"".join(frames)[:256] or None)
        self.reason = reason
        self.frames = frames
