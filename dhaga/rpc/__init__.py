"""Blocking-style msgpack-rpc over dhaga sockets: `Client`, `Server`, and the errors they raise.

The wire protocol is the msgpack-rpc specification (request ``[0, msgid, method, params]``,
response ``[1, msgid, error, result]``, notification ``[2, method, params]``), spoken over TCP,
Unix sockets or TLS, so peers in other languages (Neovim among them) interoperate. Endpoints
are symmetric: a client serves the requests its server sends, as a server does.

This package must not know how bytes become messages: that is `dhaga.codecs.msgpack_rpc`'s job.
"""

from ..codecs.msgpack_rpc import DEFAULT_MAX_MESSAGE_SIZE, ExtHandle
from ..errors import ConnectionLost, MessageTooLarge, ProtocolError, Timeout
from ._client import Client
from ._connection import Connection, current_connection
from ._methods import Methods, format_error, neovim_error
from ._server import Server
from .errors import RemoteError

__all__ = [
    "Client",
    "Server",
    "Connection",
    "Methods",
    "current_connection",
    "format_error",
    "neovim_error",
    "RemoteError",
    "ConnectionLost",
    "ProtocolError",
    "MessageTooLarge",
    "Timeout",
    "ExtHandle",
    "DEFAULT_MAX_MESSAGE_SIZE",
]
