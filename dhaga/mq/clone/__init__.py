"""The Clone pattern: a key-value map replicated from a server (pair) to any number of clients.

`CloneServer` and `CloneClient` speak the Clustered Hashmap Protocol (ZeroMQ RFC 12): snapshots
for late joiners, updates from clients, ephemeral keys (``ttl``), subtrees, HUGZ heartbeats,
and a primary/backup pair that fails over by the Binary Star rules (`dhaga.mq.bstar`). See
docs/clone.md. Command line: ``python -m dhaga.mq.clone server|client ...``.

This package is not imported by ``dhaga.mq``; it must not know the scheduler's internals.
"""

from ..bstar import State
from ..errors import BadMessage, SplitBrain
from .client import Change, CloneClient, Watch
from .endpoints import ServerEndpoints, free_base
from .protocol import DEFAULT_LIMITS, KVMsg, Limits
from .server import CloneServer

__all__ = [
    "DEFAULT_LIMITS",
    "BadMessage",
    "Change",
    "CloneClient",
    "CloneServer",
    "KVMsg",
    "Limits",
    "ServerEndpoints",
    "SplitBrain",
    "State",
    "Watch",
    "free_base",
]  # fmt: skip
