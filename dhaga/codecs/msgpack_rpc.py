"""Msgpack-RPC codec: bytes in, Request/Response/Notification values out, and back to bytes.

This module must not know about sockets, event loops, greenlets or msgid bookkeeping, nor what
any method means: it only checks that messages have the shape the msgpack-rpc spec gives them.

It is the codec's public face; the work is done in private modules, one job each:
`_msgpack_rpc_decoder` (the Decoder, reading a stream within a size limit),
`_msgpack_rpc_messages` (the message types, and the checks that make decoded values into them)
and `_msgpack_rpc_encoder` (the encode_* functions).
"""

from __future__ import annotations

from ._msgpack_rpc_decoder import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_OBJECTS,
    Decoder,
)
from ._msgpack_rpc_encoder import (
    encode_notification,
    encode_request,
    encode_response,
)
from ._msgpack_rpc_messages import (
    MAX_MSGID,
    ExtHandle,
    Message,
    Notification,
    Request,
    Response,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE", "DEFAULT_MAX_OBJECTS", "MAX_MSGID", "Request", "Response", "Notification", "Message",
    "ExtHandle", "Decoder", "encode_request", "encode_response", "encode_notification",
]
