"""The ``dhaga.timeout(seconds)`` block: raise `Timeout` in the caller when it overruns.

When the block overruns, its dhaga is interrupted at its blocking point with the block's own
`TimeoutInterrupt`, a ``BaseException`` that drivers catching ``Exception``/``OSError`` cannot
rewrite; the block turns it into its `Timeout` where it ends. Nested blocks are told apart by
the identity of the interrupt each one raises, so an inner timeout never passes for an outer
one. The interrupt is delivered by the core's `interrupt` (the same rule as a kill's); this
module knows nothing else of the core.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ._core.parking import current_waiter, discard_interrupt, interrupt
from ._core.threads import get_scheduler
from .errors import Timeout, TimeoutInterrupt

__all__ = ["timeout"]


class timeout:  # noqa: N801 - a context manager named like a function, as in gevent/trio
    """Context manager: raise `Timeout` in the current dhaga if the block overruns.

    Usable in a dhaga and in top-level code. ``seconds=None`` means no limit. The `Timeout`
    raised is this block's own instance (``exc is t.exception``); a `Timeout` raised by an
    inner block or a ``timeout=`` argument passes through untouched.

    Args:
        seconds: the block's time limit; None means no limit.

    Attributes:
        seconds: the limit given.
        exception: the `Timeout` this block raises when it overruns.
        expired: True once the limit has passed.

    Raises:
        ValueError: ``seconds`` is negative.

    Example:
        with dhaga.timeout(2.0):
            reply = client.call("slow")
    """

    __slots__ = ("seconds", "exception", "interrupt", "_handle", "_waiter", "expired")

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and seconds < 0:
            raise ValueError("timeout seconds must be >= 0 or None")
        self.seconds = seconds
        self.exception = Timeout(f"block timed out after {seconds}s", seconds)
        self.interrupt = TimeoutInterrupt(self)
        self._handle: Any = None
        self.expired = False

    def __enter__(self) -> timeout:
        if self._handle is not None:
            raise RuntimeError("a dhaga.timeout block cannot be entered twice at once")
        self._waiter = current_waiter()
        if self.seconds is not None:
            self._handle = get_scheduler().timers.call_later(self.seconds, self._fire)
        return self

    def _fire(self) -> None:
        self.expired = True
        interrupt(self._waiter, self.interrupt)  # parked: now; else at its next blocking point

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        discard_interrupt(self._waiter, self.interrupt)
        self._waiter = None  # type: ignore[assignment]
        if exc is self.interrupt:
            # The interrupt is spent: the block's edge is where it becomes a Timeout.
            raise self.exception.with_traceback(tb) from None
        return False

    def __repr__(self) -> str:
        return f"<dhaga.timeout {self.seconds}s{' expired' if self.expired else ''}>"
