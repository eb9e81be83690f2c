"""ZMTP 3.0/3.1 codec: greeting, handshakes (NULL, PLAIN, CURVE), frames and commands as bytes
in, events out.

This module must not know about sockets, schedulers or timers, nor what socket patterns do with
what arrives (routing, load balancing, subscription matching, when to send a PING), nor how an
authentication verdict is reached (ZAP lives in dhaga.mq).

It is the codec's public face; the work is done in private modules, one job each:
`_zmtp_connection` (ZMTPConnection, the state machine reading the peer's bytes),
`_zmtp_wire` (the wire format's constants, encoders and stateless parsers),
`_zmtp_events` (the events and ConnectionState), `_zmtp_socket_types` (which types fit),
`_zmtp_mechanisms` (PLAIN, RFC 24), `_zmtp_curve` (CURVE's handshake, RFC 25/26, with PyNaCl)
and `_zmtp_sealing` (CURVE's sealed traffic).
"""

from __future__ import annotations

from ._zmtp_connection import ZMTPConnection
from ._zmtp_curve import CurveClient, CurveServer, keypair
from ._zmtp_events import (
    Cancel,
    ConnectionState,
    Error,
    Event,
    Greeting,
    Message,
    Ping,
    Pong,
    Ready,
    Subscribe,
    UnknownCommand,
)
from ._zmtp_mechanisms import (
    Authenticate,
    AuthenticationFailed,
    Mechanism,
    PlainClient,
    PlainServer,
)
from ._zmtp_socket_types import SOCKET_TYPES, compatible, mismatch_reason
from ._zmtp_wire import MAX_COMMAND_SIZE, encode_message, parse_subscription

__all__ = [
    "SOCKET_TYPES", "MAX_COMMAND_SIZE", "ConnectionState", "ZMTPConnection", "Event",
    "Greeting", "Ready", "Message", "Subscribe", "Cancel", "Ping", "Pong", "Error",
    "UnknownCommand", "encode_message", "parse_subscription", "compatible", "mismatch_reason",
    "Mechanism", "PlainClient", "PlainServer", "CurveClient", "CurveServer", "keypair",
    "Authenticate", "AuthenticationFailed",
]  # fmt: skip
