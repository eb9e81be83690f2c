"""ZMTP security mechanisms without crypto: the PLAIN handshake (RFC 24) and what they share.

A mechanism drives the commands between the greeting and traffic: it is fed the peer's
handshake commands and answers with the bytes to send and, once done, the peer's metadata.
This module must not know about sockets, nor where an authentication verdict comes from (the
caller passes an ``authenticate`` function; the ZAP protocol lives in dhaga.mq).
"""

from __future__ import annotations

from typing import Callable, Optional

from ..errors import ProtocolError
from ._zmtp_wire import _encode_command, _fail, _parse_metadata

__all__ = ["Mechanism", "PlainClient", "PlainServer", "AuthenticationFailed", "Authenticate"]

#: ``authenticate(mechanism, credentials) -> (status_code, status_text)``: the verdict on a
#: client's credentials (PLAIN: username and password; CURVE: its 32-byte public key; NULL:
#: none), with ZAP's status codes ("200" accepts; "300", "400", "500" refuse).
Authenticate = Callable[[str, "list[bytes]"], "tuple[str, str]"]


class AuthenticationFailed(ProtocolError):
    """The peer's credentials were refused: an ERROR carrying the status code goes back to it.

    Attributes:
        status_code: ZAP's code, e.g. ``"400"``.
        reply: the ERROR command to send before closing (ZMTPConnection queues it).
    """

    def __init__(self, status_code: str, status_text: str, mechanism: str) -> None:
        super().__init__(
            f"{mechanism} authentication failed: {status_code} {status_text}".rstrip(), b""
        )
        self.status_code = status_code
        self.reply = encode_error_command(status_code)


def encode_error_command(reason: str) -> bytes:
    """An ERROR command (in clear, as handshakes send it)."""
    raw = reason.encode("utf-8")[:255]
    return _encode_command(b"ERROR", bytes((len(raw),)) + raw)


def authorize(authenticate: Optional[Authenticate], mechanism: str,
              credentials: list[bytes]) -> None:
    """Ask ``authenticate`` about a client; no function accepts everyone (libzmq without ZAP).

    Raises:
        AuthenticationFailed: the status code was not 200.
    """
    if authenticate is None:
        return
    code, text = authenticate(mechanism, credentials)
    if code != "200":
        raise AuthenticationFailed(code, text, mechanism)


class Mechanism:
    """A security mechanism's handshake; subclasses speak one mechanism from one side.

    Attributes:
        name: as in the greeting, e.g. ``"PLAIN"``.
        as_server: the greeting's as-server flag.
        metadata: our READY-style properties (set by ZMTPConnection before `start`).
        sealer: after a CURVE handshake, what encrypts and decrypts traffic; None otherwise.
    """

    name = "NULL"
    as_server = False

    def __init__(self) -> None:
        self.metadata = b""
        self.sealer: object | None = None

    def start(self) -> bytes:
        """The commands to send right after our greeting (a client's HELLO), or b""."""
        return b""

    def command(self, name: bytes, data: bytes, frame: bytes) -> tuple[bytes, dict | None]:
        """Consume one handshake command of the peer (not ERROR: the connection handles it).

        Returns:
            (bytes to send, the peer's metadata once the handshake is complete, else None).

        Raises:
            ProtocolError: the command is unexpected or malformed, or does not verify.
            AuthenticationFailed: the peer's credentials were refused.
        """
        raise _fail(f"unexpected command {name!r} in the {self.name} handshake", frame)


class PlainClient(Mechanism):
    """PLAIN, client side: HELLO with username and password, INITIATE with our metadata.

    Args:
        username, password: at most 255 bytes each.

    Raises:
        ValueError: a credential over 255 bytes.
    """

    name = "PLAIN"

    def __init__(self, username: bytes, password: bytes) -> None:
        super().__init__()
        if len(username) > 255 or len(password) > 255:
            raise ValueError("PLAIN username and password are at most 255 bytes each")
        self._hello = _encode_command(
            b"HELLO", bytes((len(username),)) + username + bytes((len(password),)) + password
        )
        self._expect = b"WELCOME"

    def start(self) -> bytes:
        return self._hello

    def command(self, name: bytes, data: bytes, frame: bytes) -> tuple[bytes, dict | None]:
        if name != self._expect:
            raise _fail(f"PLAIN client expected {self._expect!r}, got {name!r}", frame)
        if name == b"WELCOME":
            if data:
                raise _fail("PLAIN WELCOME has a body", frame)
            self._expect = b"READY"
            return _encode_command(b"INITIATE", self.metadata), None
        self._expect = b""
        return b"", _parse_metadata(data)


class PlainServer(Mechanism):
    """PLAIN, server side: judge HELLO's credentials, WELCOME, then READY after INITIATE.

    Args:
        authenticate: the verdict on (username, password); None accepts everyone.
    """

    name = "PLAIN"
    as_server = True

    def __init__(self, authenticate: Optional[Authenticate] = None) -> None:
        super().__init__()
        self._authenticate = authenticate
        self._expect = b"HELLO"

    def command(self, name: bytes, data: bytes, frame: bytes) -> tuple[bytes, dict | None]:
        if name != self._expect:
            raise _fail(f"PLAIN server expected {self._expect!r}, got {name!r}", frame)
        if name == b"HELLO":
            size = data[0] if data else 0
            if not data or 1 + size >= len(data) or 2 + size + data[1 + size] != len(data):
                raise _fail("malformed PLAIN HELLO: bad username or password length", frame)
            username = bytes(data[1 : 1 + size])
            password = bytes(data[2 + size :])
            self._expect = b"INITIATE"
            authorize(self._authenticate, "PLAIN", [username, password])
            return _encode_command(b"WELCOME"), None
        self._expect = b""
        properties = _parse_metadata(data)
        return _encode_command(b"READY", self.metadata), properties
