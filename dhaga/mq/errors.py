"""The errors of `dhaga.mq` sockets (defined with all of dhaga's errors in `dhaga.errors`).

This module only re-exports them under ``dhaga.mq``.
"""

from __future__ import annotations

from dhaga.errors import (
    BadMessage,
    BadState,
    HostUnreachable,
    MQError,
    NotSupported,
    SocketClosed,
    SplitBrain,
)

__all__ = [
    "MQError", "BadState", "HostUnreachable", "NotSupported", "SocketClosed", "SplitBrain",
    "BadMessage",
]  # fmt: skip
