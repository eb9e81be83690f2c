"""Where a Clone server listens: its four endpoints, and RFC 12's "port P, P+1, P+2" convention.

This module must not know the protocol or the scheduler; it only names and binds addresses.
"""

from __future__ import annotations

import socket as _stdsocket
from dataclasses import dataclass

__all__ = ["ServerEndpoints", "free_base"]


@dataclass(frozen=True)
class ServerEndpoints:
    """The endpoints of one Clone server.

    Attributes:
        snapshot: ROUTER answering ICANHAZ? (RFC 12: port P).
        publisher: PUB of updates and HUGZ (P + 1).
        collector: SUB collecting clients' updates (P + 2).
        state: Binary Star state publisher, for the peer server (P + 3, our convention).
    """

    snapshot: str
    publisher: str
    collector: str
    state: str

    @classmethod
    def from_base(cls, base: str) -> ServerEndpoints:
        """The endpoints at ports P .. P+3 of ``tcp://host:P``.

        Raises:
            ValueError: not a ``tcp://host:port`` endpoint with a numeric port.
        """
        if isinstance(base, ServerEndpoints):
            return base
        if not base.startswith("tcp://") or ":" not in base[6:]:
            raise ValueError(f"{base!r} is not tcp://host:port")
        host, _, port = base.rpartition(":")
        if not port.isdigit() or not 0 < int(port) <= 65532:
            raise ValueError(f"{base!r}: the port must be a number from 1 to 65532")
        p = int(port)
        return cls(*(f"{host}:{p + i}" for i in range(4)))

    @property
    def base(self) -> str:
        """The snapshot endpoint (``tcp://host:P`` when the RFC's convention is followed)."""
        return self.snapshot


def free_base(host: str = "127.0.0.1", count: int = 4, attempts: int = 50) -> str:
    """A ``tcp://host:P`` where ports P .. P+count-1 were free a moment ago.

    For tests and examples that must tell two servers each other's ports before either
    starts: another process may still take a port before the server binds it.

    Raises:
        OSError: no free block found.
    """
    for _ in range(attempts):
        held = []
        try:
            first = _stdsocket.socket()
            held.append(first)
            first.bind((host, 0))
            p = first.getsockname()[1]
            if p + count - 1 > 65535:
                continue
            for i in range(1, count):
                s = _stdsocket.socket()
                held.append(s)
                s.bind((host, p + i))
            return f"tcp://{host}:{p}"
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise OSError(f"no block of {count} free ports found on {host}")
