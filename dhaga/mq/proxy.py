"""`proxy`: forward messages between two sockets both ways, copying them to a capture socket.

This module uses only the public socket API and dhagas; it must not know how sockets work.
"""

from __future__ import annotations

from typing import Any

from ..group import iwait
from ..scheduler import spawn
from .errors import SocketClosed

__all__ = ["proxy"]

_RECEIVERS = {"PULL", "SUB", "XSUB", "XPUB", "REQ", "REP", "DEALER", "ROUTER", "PAIR"}
_SENDERS = {"PUSH", "PUB", "XPUB", "XSUB", "REQ", "REP", "DEALER", "ROUTER", "PAIR"}


def _forward(src: Any, dst: Any, capture: Any) -> None:
    recv, send = src.recv_multipart, dst.send_multipart
    if capture is None:
        while True:
            send(recv())
    while True:
        msg = recv()
        capture.send_multipart(msg)
        send(msg)


def proxy(frontend: Any, backend: Any, capture: Any = None) -> None:
    """Run a device: what ``frontend`` receives goes out of ``backend``, and back.

    Each direction runs in its own dhaga (a full peer on one side never stalls the other); a
    direction exists when its source can receive and its destination send (ROUTER/DEALER,
    XSUB/XPUB, PULL/PUSH...). Every message forwarded is also sent to ``capture`` if given.
    Returns when either socket is closed; killing the calling dhaga stops the proxy.

    Args:
        frontend: one socket of the device.
        backend: the other socket.
        capture: a socket that gets a copy of every message forwarded, or None.

    Raises:
        ValueError: neither direction is possible with these socket types.
    """
    routes = [
        (a, b) for a, b in ((frontend, backend), (backend, frontend))
        if a.kind in _RECEIVERS and b.kind in _SENDERS
    ]
    if not routes:
        raise ValueError(f"nothing to forward between {frontend.kind} and {backend.kind}")
    workers = [spawn(_forward, a, b, capture) for a, b in routes]
    try:
        while True:
            for worker in workers:
                if worker.done():
                    exc = worker.exception()
                    if isinstance(exc, SocketClosed):
                        return
                    if exc is not None:
                        raise exc
            next(iwait(workers))  # until a direction ends
    finally:
        for worker in workers:
            worker.kill(block=False)
