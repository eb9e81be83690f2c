"""Every exception dhaga raises, in one hierarchy.

This module knows nothing of schedulers, sockets or protocols: it only names what went wrong.
"""

from __future__ import annotations

__all__ = [
    "DhagaError",
    "Timeout",
    "Killed",
    "BlockingError",
    "ProtocolError",
    "MessageTooLarge",
    "ConnectionLost",
    "RemoteError",
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
