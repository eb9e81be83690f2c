"""ZMTP CURVE (RFC 25, CurveZMQ RFC 26): the handshake both ways, ending in a `Sealer`.

Crypto is libsodium's, through PyNaCl (the ``curve`` extra): ``crypto_box`` for HELLO, WELCOME,
INITIATE and the vouch, ``crypto_secretbox`` for the server's cookie, and precomputed
``crypto_box_easy_afternm`` for READY and every MESSAGE. Nothing here is hand-written crypto.
The sealed traffic after the handshake is `_zmtp_sealing`'s.
This module must not know about sockets or where the verdict on a client key comes from.
"""

# How this works
# --------------
# Handshake (client C with long-term key C/c, transient C'/c'; server S/s, transient S'/s'):
#   HELLO     version 1.0, 72 zero bytes, C', short nonce, Box[64 zeros](C'->S)
#   WELCOME   16-byte nonce, Box[S' + cookie](S->C'); cookie = nonce16 + SecretBox[C' + s']
#   INITIATE  cookie, short nonce, Box[C + vouch nonce16 + vouch + metadata](C'->S'),
#             vouch = Box[C' + S](C->S')
#   READY     short nonce, Box[metadata](S'->C')
# Full nonces are a 16-byte prefix ("CurveZMQHELLO---", "CurveZMQINITIATE", "CurveZMQREADY---",
# "CurveZMQMESSAGEC"/"S") and an 8-byte big-endian counter, or an 8-byte prefix ("WELCOME-",
# "COOKIE--", "VOUCH---") and 16 random bytes. Each side counts its short nonces from 1 (the
# client's HELLO is 1, INITIATE 2), and refuses a peer nonce that is not above the last one:
# that is what stops a replayed frame. After the handshake every frame, and every command
# (PING, SUBSCRIBE...), travels as a MESSAGE: short nonce, then the box of one flags byte (1:
# MORE, 2: a command) followed by the frame or the command's body. RFC 26 calls MESSAGE a
# command, but libzmq 4.x sends (and only accepts) it in an ordinary last-frame header, flags
# 0x00 or 0x02; we send what libzmq accepts and read both forms.

from __future__ import annotations

import struct
from typing import Any, Optional

from ._zmtp_mechanisms import Authenticate, Mechanism, authorize
from ._zmtp_sealing import Sealer
from ._zmtp_wire import _encode_command, _fail, _parse_metadata

try:
    import nacl.bindings as _nacl
    from nacl.exceptions import CryptoError as _CryptoError
    from nacl.utils import random as _random
except ImportError:  # pragma: no cover - depends on the environment
    _nacl = None
    _CryptoError = Exception
    _random = None

__all__ = ["CurveClient", "CurveServer", "Sealer", "keypair", "require_sodium"]

_pack = struct.Struct(">Q").pack
_HELLO_SIZE = 194  # after "\x05HELLO"
_WELCOME_SIZE = 160  # after "\x07WELCOME"
_INITIATE_MIN = 248  # after "\x08INITIATE"
_READY_MIN = 24  # after "\x05READY"


def require_sodium() -> Any:
    """PyNaCl's bindings, or a clear ImportError naming the extra to install."""
    if _nacl is None:
        raise ImportError("CURVE needs PyNaCl (libsodium): pip install 'dhaga[curve]'")
    return _nacl


def keypair() -> tuple[bytes, bytes]:
    """A new long-term CURVE key pair, raw: (public, secret), 32 bytes each."""
    return require_sodium().crypto_box_keypair()  # type: ignore[no-any-return]


def _open(box: bytes, nonce: bytes, public: bytes, secret: bytes, what: str,
          frame: bytes) -> bytes:
    try:
        return _nacl.crypto_box_open(box, nonce, public, secret)  # type: ignore[no-any-return]
    except _CryptoError:
        raise _fail(what, frame) from None


class CurveClient(Mechanism):
    """CURVE, client side: proves it knows the server's public key, vouches with its own.

    Args:
        public, secret: our long-term key pair, 32 raw bytes each.
        server: the server's long-term public key, 32 raw bytes.
    """

    name = "CURVE"

    def __init__(self, public: bytes, secret: bytes, server: bytes) -> None:
        super().__init__()
        nacl = require_sodium()
        _check_keys(public=public, secret=secret, server=server)
        self._public, self._secret, self._server = public, secret, server
        self._cn_public, self._cn_secret = nacl.crypto_box_keypair()
        self._expect = b"WELCOME"
        self._key = b""

    def start(self) -> bytes:
        short = _pack(1)
        box = _nacl.crypto_box(bytes(64), b"CurveZMQHELLO---" + short, self._server,
                               self._cn_secret)
        return _encode_command(b"HELLO", b"\x01\x00" + bytes(72) + self._cn_public + short + box)

    def command(self, name: bytes, data: bytes, frame: bytes) -> tuple[bytes, dict | None]:
        if name != self._expect:
            raise _fail(f"CURVE client expected {self._expect!r}, got {name!r}", frame)
        if name == b"WELCOME":
            return self._welcome(data, frame), None
        if len(data) < _READY_MIN:
            raise _fail("malformed CURVE READY: too short", frame)
        short = bytes(data[:8])
        try:
            plain = _nacl.crypto_box_open_easy_afternm(
                bytes(data[8:]), b"CurveZMQREADY---" + short, self._key)
        except _CryptoError:
            raise _fail("CURVE READY does not verify", frame) from None
        properties = _parse_metadata(plain)
        self._expect = b""
        self.sealer = Sealer(self._key, b"CurveZMQMESSAGEC", b"CurveZMQMESSAGES", 3,
                             int.from_bytes(short, "big"))
        return b"", properties

    def _welcome(self, data: bytes, frame: bytes) -> bytes:
        if len(data) != _WELCOME_SIZE:
            raise _fail(f"malformed CURVE WELCOME: {len(data)} bytes, not 160", frame)
        plain = _open(bytes(data[16:]), b"WELCOME-" + bytes(data[:16]), self._server,
                      self._cn_secret,
                      "CURVE WELCOME does not verify: is curve_serverkey the server's key?",
                      frame)
        server_transient, cookie = plain[:32], plain[32:128]
        self._key = _nacl.crypto_box_beforenm(server_transient, self._cn_secret)
        vouch_nonce = _random(16)
        vouch = _nacl.crypto_box(self._cn_public + self._server, b"VOUCH---" + vouch_nonce,
                                 server_transient, self._secret)
        short = _pack(2)
        box = _nacl.crypto_box_easy_afternm(
            self._public + vouch_nonce + vouch + self.metadata, b"CurveZMQINITIATE" + short,
            self._key)
        self._expect = b"READY"
        return _encode_command(b"INITIATE", cookie + short + box)


class CurveServer(Mechanism):
    """CURVE, server side: answers clients that know our public key; judges theirs.

    Args:
        public, secret: our long-term key pair, 32 raw bytes each.
        authenticate: the verdict on the client's long-term public key; None accepts any.
    """

    name = "CURVE"
    as_server = True

    def __init__(self, public: bytes, secret: bytes,
                 authenticate: Optional[Authenticate] = None) -> None:
        super().__init__()
        nacl = require_sodium()
        _check_keys(public=public, secret=secret)
        self._public, self._secret = public, secret
        self._authenticate = authenticate
        self._cn_public, self._cn_secret = nacl.crypto_box_keypair()
        self._client_transient = b""
        self._cookie_key = b""
        self._expect = b"HELLO"

    def command(self, name: bytes, data: bytes, frame: bytes) -> tuple[bytes, dict | None]:
        if name != self._expect:
            raise _fail(f"CURVE server expected {self._expect!r}, got {name!r}", frame)
        if name == b"HELLO":
            return self._hello(data, frame), None
        return self._initiate(data, frame)

    def _hello(self, data: bytes, frame: bytes) -> bytes:
        if len(data) != _HELLO_SIZE:
            raise _fail(f"malformed CURVE HELLO: {len(data)} bytes, not 194", frame)
        if data[:2] != b"\x01\x00":
            raise _fail(f"CURVE HELLO version {data[0]}.{data[1]}: only 1.0 is known", frame)
        client_transient = bytes(data[74:106])
        _open(bytes(data[114:194]), b"CurveZMQHELLO---" + bytes(data[106:114]),
              client_transient, self._secret,
              "CURVE HELLO does not verify: the client does not know our public key", frame)
        self._client_transient = client_transient
        self._cookie_key = _random(32)
        cookie_nonce = _random(16)
        cookie = _nacl.crypto_secretbox(client_transient + self._cn_secret,
                                        b"COOKIE--" + cookie_nonce, self._cookie_key)
        welcome_nonce = _random(16)
        box = _nacl.crypto_box(self._cn_public + cookie_nonce + cookie,
                               b"WELCOME-" + welcome_nonce, client_transient, self._secret)
        self._expect = b"INITIATE"
        return _encode_command(b"WELCOME", welcome_nonce + box)

    def _initiate(self, data: bytes, frame: bytes) -> tuple[bytes, dict | None]:
        if len(data) < _INITIATE_MIN:
            raise _fail(f"malformed CURVE INITIATE: {len(data)} bytes, under 248", frame)
        try:
            cookie = _nacl.crypto_secretbox_open(bytes(data[16:96]),
                                                 b"COOKIE--" + bytes(data[:16]),
                                                 self._cookie_key)
        except _CryptoError:
            raise _fail("CURVE INITIATE carries a cookie we did not make", frame) from None
        if cookie != self._client_transient + self._cn_secret:
            raise _fail("CURVE INITIATE carries another connection's cookie", frame)
        self._cookie_key = b""  # a cookie serves once
        short = bytes(data[96:104])
        plain = _open(bytes(data[104:]), b"CurveZMQINITIATE" + short,
                      self._client_transient, self._cn_secret,
                      "CURVE INITIATE does not verify", frame)
        client_key = plain[:32]
        vouch = _open(plain[48:128], b"VOUCH---" + plain[32:48], client_key, self._cn_secret,
                      "CURVE vouch does not verify: the client's key pair does not match",
                      frame)
        if vouch != self._client_transient + self._public:
            raise _fail("CURVE vouch names another connection or server", frame)
        properties = _parse_metadata(plain[128:])
        authorize(self._authenticate, "CURVE", [client_key])
        key = _nacl.crypto_box_beforenm(self._client_transient, self._cn_secret)
        ready_short = _pack(1)
        box = _nacl.crypto_box_easy_afternm(self.metadata, b"CurveZMQREADY---" + ready_short,
                                            key)
        self._expect = b""
        self.sealer = Sealer(key, b"CurveZMQMESSAGES", b"CurveZMQMESSAGEC", 2,
                             int.from_bytes(short, "big"))
        self.client_key = client_key
        return _encode_command(b"READY", ready_short + box), properties


def _check_keys(**keys: bytes) -> None:
    for what, key in keys.items():
        if not isinstance(key, bytes) or len(key) != 32:
            raise ValueError(f"CURVE {what} key must be 32 raw bytes")
