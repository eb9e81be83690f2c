"""Which security mechanism a socket's options select, and the ZAP request that judges a peer.

This module must not know the mechanisms' wire format (the codec's) nor how the Authenticator
decides (dhaga.mq.auth): it turns options into a codec mechanism and a peer into a ZAP request.
"""

from __future__ import annotations

import socket as _stdsocket
from typing import Any, Callable, Optional

from ..codecs import z85
from ..codecs.zmtp import CurveClient, CurveServer, Mechanism, PlainClient, PlainServer
from ..codecs.zmtp import keypair as _raw_keypair
from . import auth

__all__ = ["curve_keypair", "z85_encode", "z85_decode", "check_security", "handshake_for"]

z85_encode = z85.encode
z85_decode = z85.decode


def curve_keypair() -> tuple[str, str]:
    """Make a new CURVE key pair (libsodium's ``crypto_box_keypair``).

    Returns:
        (public, secret), each 40 characters of Z85: give the public key to peers and keep the
        secret one secret.

    Raises:
        ImportError: PyNaCl is not installed (``pip install 'dhaga[curve]'``).
    """
    public, secret = _raw_keypair()
    return z85.encode(public), z85.encode(secret)


def mechanism_name(sock: Any) -> str:
    """The mechanism a socket's options select: "CURVE", "PLAIN" or "NULL" (as libzmq)."""
    if sock.curve_server or sock.curve_serverkey:
        return "CURVE"
    if sock.plain_server or sock.plain_username or sock.plain_password:
        return "PLAIN"
    return "NULL"


def check_security(sock: Any) -> None:
    """Refuse incomplete security options before any connection is made.

    Raises:
        ValueError: a CURVE socket without its key pair.
        ImportError: CURVE without PyNaCl.
    """
    if mechanism_name(sock) != "CURVE":
        return
    from ..codecs._zmtp_curve import require_sodium

    require_sodium()
    if len(sock.curve_secretkey) != 32 or len(sock.curve_publickey) != 32:
        role = "server" if sock.curve_server else "client"
        raise ValueError(f"a CURVE {role} needs curve_publickey and curve_secretkey "
                         "(make them with dhaga.mq.curve_keypair())")


def _peer_address(stream: Any) -> str:
    try:
        if stream.family in (_stdsocket.AF_INET, _stdsocket.AF_INET6):
            return str(stream.getpeername()[0])
    except OSError:
        pass
    return ""


def handshake_for(sock: Any, stream: Any) -> tuple[Optional[Mechanism], Optional[Callable]]:
    """The codec mechanism for a new connection of ``sock``, and its ZAP verdict function.

    As libzmq: without a running `Authenticator`, a CURVE server accepts any client key and a
    PLAIN server refuses every client (PLAIN needs ZAP); NULL asks only when ``zap_domain``
    is set.
    """
    name = mechanism_name(sock)
    server = name == "NULL" or (sock.curve_server if name == "CURVE" else sock.plain_server)
    authenticate = None
    if server and (name == "PLAIN" or auth.running() is not None) and (
            name != "NULL" or sock.zap_domain):
        authenticate = _zap(sock, _peer_address(stream))
    if name == "CURVE":
        if sock.curve_server:
            return CurveServer(sock.curve_publickey, sock.curve_secretkey, authenticate), None
        return CurveClient(sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey), None
    if name == "PLAIN":
        if sock.plain_server:
            return PlainServer(authenticate), None
        return PlainClient(sock.plain_username, sock.plain_password), None
    return None, authenticate


def _zap(sock: Any, address: str) -> Callable[[str, list[bytes]], tuple[str, str]]:
    """A verdict function that sends RFC 27 requests to the running Authenticator."""
    domain = sock.zap_domain.encode("utf-8")
    identity = sock.routing_id
    counter = iter(range(1, 1 << 62))

    def authenticate(mechanism: str, credentials: list[bytes]) -> tuple[str, str]:
        handler = auth.running()
        if handler is None:  # none runs (or it stopped since the connection began)
            if mechanism == "PLAIN":
                return "500", "PLAIN needs a running dhaga.mq.Authenticator"
            return "200", "OK"
        request_id = str(next(counter)).encode()
        request = [b"1.0", request_id, domain, address.encode(), identity, mechanism.encode(),
                   *credentials]
        reply = handler.handle(request)
        if len(reply) < 4 or reply[0] != b"1.0" or reply[1] != request_id:
            return "500", "malformed ZAP reply"
        return reply[2].decode("ascii", "replace"), reply[3].decode("utf-8", "replace")

    return authenticate
