"""`Poller`: wait until any of several sockets can receive or send, with a timeout.

This module knows the socket's readiness questions and the scheduler's parking rules; it must
not know how a socket routes or moves messages.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from .._core.parking import park, ticket
from .errors import SocketClosed

__all__ = ["Poller", "POLLIN", "POLLOUT"]

#: Interest and readiness flags, with libzmq's values.
POLLIN = 1
POLLOUT = 2


class Poller:
    """Waits on several `dhaga.mq.Socket` objects at once, as ``zmq.Poller`` does.

    Unlike pyzmq, `poll` takes its timeout in seconds (dhaga's rule for every blocking call).

    Example:
        poller = Poller()
        poller.register(frontend, POLLIN)
        poller.register(backend, POLLIN)
        for sock, events in poller.poll(timeout=2.5):
            ...
    """

    def __init__(self) -> None:
        self._items: dict[Any, int] = {}

    def register(self, socket: Any, flags: int = POLLIN | POLLOUT) -> None:
        """Watch ``socket`` for ``flags`` (POLLIN, POLLOUT or both); 0 unregisters it.

        Args:
            socket: a dhaga.mq `Socket`.
            flags: ``POLLIN``, ``POLLOUT`` or both (or-ed); 0 unregisters.
        """
        if flags & ~(POLLIN | POLLOUT):
            raise ValueError("flags are POLLIN, POLLOUT or POLLIN | POLLOUT")
        if flags:
            self._items[socket] = flags
        else:
            self._items.pop(socket, None)

    modify = register

    def unregister(self, socket: Any) -> None:
        """Stop watching ``socket``.

        Args:
            socket: a registered socket.

        Raises:
            KeyError: it was not registered.
        """
        del self._items[socket]

    @property
    def sockets(self) -> list[tuple[Any, int]]:
        """The registered sockets and their flags."""
        return list(self._items.items())

    def _ready(self) -> list[tuple[Any, int]]:
        ready = []
        for sock, flags in self._items.items():
            if sock.closed:
                raise SocketClosed(f"a polled socket is closed: {sock!r}")
            events = 0
            if flags & POLLIN and (sock._rparts or sock._strategy.can_recv()):
                events |= POLLIN
            if flags & POLLOUT and sock._strategy.can_send():
                events |= POLLOUT
            if events:
                ready.append((sock, events))
        return ready

    def poll(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        """Wait until a registered socket is ready, or ``timeout`` seconds passed.

        Args:
            timeout: seconds; None waits forever; 0 only looks.

        Returns:
            ``(socket, events)`` pairs for the ready sockets (``dict(...)`` of it works);
            empty when the timeout expired.

        Raises:
            SocketClosed: a registered socket is (or gets) closed.
        """
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            ready = self._ready()
            if ready or timeout == 0:
                return ready
            left = None if deadline is None else deadline - monotonic()
            if left is not None and left <= 0:
                return []
            mine = ticket()
            socks = list(self._items)
            for sock in socks:
                sock._pollers.append(mine)
            try:
                woken = park(mine, left, False)
            finally:
                for sock in socks:
                    try:
                        sock._pollers.remove(mine)
                    except ValueError:
                        pass
            if woken is False:
                return self._ready()
