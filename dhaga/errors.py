"""The core's errors, and the wire errors every protocol shares (one hierarchy under `DhagaError`).

Each protocol package owns its own errors (`dhaga.mq.errors`, `dhaga.rpc.errors`), built on
these. This module knows nothing of schedulers, sockets or protocols: it only names what went
wrong.
"""

from __future__ import annotations

__all__ = [
    "DhagaError",
    "Timeout",
    "Killed",
    "TimeoutInterrupt",
    "BlockingError",
    "Deadlock",
    "ProtocolError",
    "MessageTooLarge",
    "ConnectionLost",
    "ConcurrentUseError",
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


class Deadlock(DhagaError):
    """Nothing can ever wake a wait: raised by ``run()`` or a top-level blocking call.

    Raised only when the thread's loop has nothing left that could wake a waiter: no runnable
    dhaga, no timer, no watched file descriptor, no pending ``to_thread`` work, no other live
    thread, no loop callback, signal handler or asyncio task (see docs/debugging.md). Seen on
    asyncio's loop and on uvloop (through libuv's own functions, which uvloop exports); on
    another loop, or a uvloop whose libuv functions cannot be found, a deadlock hangs instead.

    Attributes:
        waits: ``(name, what it waits on, where)`` for each parked dhaga and the top level.
    """

    def __init__(self, message: str, waits: list | None = None) -> None:
        super().__init__(message)
        self.waits = list(waits or [])


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


class ConcurrentUseError(DhagaError, RuntimeError):
    """Two dhagas waited to read (or to write) the same file descriptor at the same time."""
