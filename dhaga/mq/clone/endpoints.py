"""Where a Clone server listens: its four endpoints, and RFC 12's "port P, P+1, P+2" convention.

This module must not know the protocol or the scheduler; it only names and binds addresses.
"""

from __future__ import annotations

import random
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


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (Linux; 32768 elsewhere)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_base(host: str = "127.0.0.1", count: int = 4, attempts: int = 200) -> str:
    """A ``tcp://host:P`` where ports P .. P+count-1 were free a moment ago.

    For tests and examples that must tell two servers each other's ports before either
    starts: another process may still take a port before the server binds it. Blocks are
    looked for below the ephemeral range, where outgoing connections never land: after many
    short connections most ephemeral ports sit in TIME_WAIT and cannot be bound.

    Args:
        host: the address to probe the ports on.
        count: how many consecutive ports must be free.
        attempts: how many blocks to try before giving up.

    Returns:
        ``tcp://host:P``, the block's first port.

    Raises:
        OSError: no free block found.
    """
    top = _ephemeral_low() - count
    low = max(1024, top - 16384)
    rng = random.Random()
    for _ in range(attempts):
        p = rng.randrange(low, top) if top > low else 0
        held: list[_stdsocket.socket] = []
        try:
            for i in range(count):
                s = _stdsocket.socket()
                held.append(s)
                s.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)  # as our listeners
                s.bind((host, p + i if p else 0))
                if not p:  # no room below the ephemeral range: take what the kernel gives
                    p = s.getsockname()[1]
                    if p + count - 1 > 65535:
                        raise OSError("block would pass port 65535")
            return f"tcp://{host}:{p}"
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise OSError(f"no block of {count} free ports found on {host}")
