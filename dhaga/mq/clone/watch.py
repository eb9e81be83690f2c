"""Change and Watch: how a `CloneClient` reports changes to the keys it replicates.

This module must not know the protocol or the client's internals: the client puts `Change`
objects into a watch's queue, and gives it a function to forget it.
"""

from __future__ import annotations

import queue as _queue
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from ...errors import Timeout
from ...sync import Queue
from ..errors import SocketClosed

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Change", "Watch"]


class Change(NamedTuple):
    """One key's change, as a `Watch` reports it.

    Attributes:
        key: the key.
        value: the new value; None when the key was deleted (or expired).
        sequence: the server's sequence number of the change (0 for our own update before the
            server has numbered it).
    """

    key: str
    value: bytes | None
    sequence: int


class Watch:
    """The changes to the keys under ``prefix``, from the moment the watch was made.

    Iterate over it (blocking), or call `get`. Made by `CloneClient.watch`; close it (or
    leave its ``with`` block) to stop collecting.

    Args:
        prefix: the keys watched.
        forget: called with the watch when it is closed (its client stops feeding it).
    """

    def __init__(self, prefix: str, forget: Callable[[Watch], None]) -> None:
        self.prefix = prefix
        self._forget = forget
        self._queue: Queue[Change | None] = Queue()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Change]:
        while True:
            change = self._queue.get()
            if change is None:
                self._queue.put_nowait(None)  # for the next reader
                return
            yield change

    def get(self, timeout: float | None = None) -> Change:
        """The next change.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            the next `Change`.

        Raises:
            Timeout: none within ``timeout`` seconds.
            SocketClosed: the watch or its client was closed.
        """
        try:
            change = self._queue.get(timeout=timeout)
        except _queue.Empty:
            raise Timeout("no change", timeout) from None
        if change is None:
            self._queue.put_nowait(None)
            raise SocketClosed("the watch was closed")
        return change

    def close(self) -> None:
        """Stop collecting: queued changes are still delivered, then iteration ends and `get` raises."""
        self._forget(self)
        self._queue.put_nowait(None)
