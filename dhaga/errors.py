"""Every exception dhaga raises, in one hierarchy.

This module knows nothing of schedulers, sockets or protocols: it only names what went wrong.
"""

from __future__ import annotations

__all__ = [
    "DhagaError",
    "Timeout",
    "Killed",
    "TimeoutInterrupt",
    "BlockingError",
    "ProtocolError",
    "MessageTooLarge",
    "ConnectionLost",
    "RemoteError",
    "ConcurrentUseError",
    "MQError",
    "BadState",
    "HostUnreachable",
    "NotSupported",
    "SocketClosed",
    "SplitBrain",
    "BadMessage",
]


class DhagaError(Exception):
    """Base class of dhaga's own errors."""


class Timeout(DhagaError, TimeoutError):
    """A ``timeout=`` expired, or a ``dhaga.timeout()`` block overran.

    Attributes:
        seconds: the limit that expired, when known.
    """

    def __init__(self, message: str = "timed out", seconds: float | None = None) -> None:
        super().__init__(message)
        self.seconds = seconds


class Killed(BaseException):
    """Raised inside a dhaga by ``Dhaga.kill()``.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` blocks in user
    code do not swallow it. A dhaga that ends by it counts as killed, not failed.
    """


class TimeoutInterrupt(BaseException):
    """Raised inside a dhaga at its blocking point when its ``dhaga.timeout()`` block overruns.

    A ``BaseException`` (as `Killed` is, and as trio's ``Cancelled`` and gevent's ``Timeout``
    are) so that library code which catches ``Exception`` or ``OSError`` -- a database driver
    turning any socket error into its own ``OperationalError`` -- lets it through untouched. The
    block that owns it turns it into its `Timeout` where the block ends; user code never needs
    to catch it.

    Attributes:
        timeout: the ``dhaga.timeout`` block that fired.
    """

    def __init__(self, block: object) -> None:
        super().__init__(f"interrupted by a dhaga.timeout({getattr(block, 'seconds', None)}) block")
        self.timeout = block


class BlockingError(DhagaError, RuntimeError):
    """A blocking call was made where it would block the event loop."""


class ProtocolError(DhagaError, ValueError):
    """Bytes from a peer broke the wire protocol.

    Attributes:
        data: the offending bytes (possibly truncated), when known.
    """

    def __init__(self, message: str, data: bytes | None = None) -> None:
        super().__init__(message)
        self.data = data


class MessageTooLarge(ProtocolError):
    """A peer announced or sent a message over the configured size limit."""


class ConnectionLost(DhagaError, ConnectionError):
    """The connection carrying an operation dropped before the operation completed."""


class RemoteError(DhagaError):
    """The remote peer answered a call with an error.

    Attributes:
        error: the peer's error object, exactly as it was sent.
    """

    def __init__(self, error: object) -> None:
        super().__init__(error)
        self.error = error

    @property
    def type(self) -> str | None:
        """The remote exception's type name, when the peer sent ``[type, message]``."""
        if isinstance(self.error, (list, tuple)) and self.error and isinstance(self.error[0], str):
            return self.error[0]
        return None

    def __str__(self) -> str:
        err = self.error
        if isinstance(err, (list, tuple)) and len(err) == 2:
            return f"{err[0]}: {err[1]}"
        return str(err)


class ConcurrentUseError(DhagaError, RuntimeError):
    """Two dhagas waited to read (or to write) the same file descriptor at the same time."""


# ---------------------------------------------------------------------- dhaga.mq sockets
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
