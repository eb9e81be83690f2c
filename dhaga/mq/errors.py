"""The errors of `dhaga.mq` sockets, under `dhaga.errors.DhagaError`.

This module names what went wrong; it knows nothing of sockets, pipes or the wire.
"""

from __future__ import annotations

from dhaga.errors import DhagaError

__all__ = ["MQError", "BadState", "HostUnreachable", "NotSupported", "SocketClosed"]


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
