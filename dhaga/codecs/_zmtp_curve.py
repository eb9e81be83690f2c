"""ZMTP CURVE (RFC 25, CurveZMQ RFC 26): the handshake both ways, then sealed MESSAGE commands.

Crypto is libsodium's, through PyNaCl (the ``curve`` extra): ``crypto_box`` for HELLO, WELCOME,
INITIATE and the vouch, ``crypto_secretbox`` for the server's cookie, and precomputed
``crypto_box_easy_afternm`` for READY and every MESSAGE. Nothing here is hand-written crypto.
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

from ..errors import MessageTooLarge
from ._zmtp_events import ConnectionState, Message
from ._zmtp_mechanisms import Authenticate, Mechanism, authorize
from ._zmtp_wire import _COMPACT_AT, _encode_command, _fail, _parse_metadata

try:
    import nacl.bindings as _nacl
    from nacl.exceptions import CryptoError as _CryptoError
    from nacl.utils import random as _random
except ImportError:  # pragma: no cover - depends on the environment
    _nacl = None
    _CryptoError = Exception
    _random = None
try:  # libsodium itself, as PyNaCl loaded it: sealing in place saves a copy per frame
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib
except ImportError:  # pragma: no cover - depends on PyNaCl's layout
    _ffi = _lib = None

__all__ = ["CurveClient", "CurveServer", "Sealer", "keypair", "require_sodium"]

_pack = struct.Struct(">Q").pack
_pack_long = struct.Struct(">BQ").pack
_HELLO_SIZE = 194  # after "\x05HELLO"
_WELCOME_SIZE = 160  # after "\x07WELCOME"
_INITIATE_MIN = 248  # after "\x08INITIATE"
_READY_MIN = 24  # after "\x05READY"
_MESSAGE = b"\x07MESSAGE"
_CLOSED = ConnectionState.CLOSED
_SHORT = tuple(bytes((0, n)) for n in range(256))  # frame headers of short sealed frames
_unpack_size = struct.Struct(">Q").unpack_from


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


class Sealer:
    """Encrypts our frames and commands as MESSAGE commands and opens the peer's.

    Args:
        key: the precomputed box key (crypto_box_beforenm of the transient keys).
        ours, theirs: the 16-byte nonce prefixes we send with and the peer sends with.
        nonce: our next short nonce. peer_nonce: the last short nonce the peer used.
    """

    __slots__ = ("_key", "_ours", "_theirs", "_nonce", "_peer_nonce", "_seal", "_unseal")

    def __init__(self, key: bytes, ours: bytes, theirs: bytes, nonce: int,
                 peer_nonce: int) -> None:
        self._key = key
        self._ours = ours
        self._theirs = theirs
        self._nonce = nonce
        self._peer_nonce = peer_nonce
        self._seal = _nacl.crypto_box_easy_afternm
        self._unseal = _nacl.crypto_box_open_easy_afternm

    def encode_message(self, frames: Any) -> bytes | bytearray:
        """Seal a whole message, one MESSAGE per frame, all but the last flagged MORE.

        Raises:
            ValueError: ``frames`` is empty.
        """
        if len(frames) == 1 and _lib is not None:  # the common case: sealed in place
            frame = frames[0]
            size = 33 + len(frame)  # MESSAGE, nonce, MAC, flags byte, frame
            head = 2 if size < 256 else 9
            out = bytearray(head + size)
            if head == 2:
                out[1] = size
            else:
                out[:9] = _pack_long(2, size)
            short = _pack(self._nonce)
            self._nonce += 1
            box = head + 16
            out[head:box] = _MESSAGE + short
            out[box + 17 :] = frame  # after the MAC's room and a zero flags byte
            c = _ffi.from_buffer(out)
            _lib.crypto_box_easy_afternm(c + box, c + box + 16, size - 32, self._ours + short,
                                         self._key)
            _ffi.release(c)
            return out
        if not frames:
            raise ValueError("a message has at least one frame")
        seal, key, ours = self._seal, self._key, self._ours
        n = self._nonce
        out = []
        append = out.append
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            short = _pack(n)
            box = seal((b"\x01" if i < last else b"\x00") + frame, ours + short, key)
            size = 16 + len(box)
            append(_SHORT[size] if size < 256 else _pack_long(2, size))
            append(_MESSAGE)
            append(short)
            append(box)
            n += 1
        self._nonce = n
        return b"".join(out)

    def encode_command(self, name: bytes, data: bytes = b"") -> bytes:
        """Seal a command (PING, PONG, SUBSCRIBE...) as a MESSAGE flagged as a command."""
        short = _pack(self._nonce)
        self._nonce += 1
        body = b"\x02" + bytes((len(name),)) + name + data
        box = self._seal(body, self._ours + short, self._key)
        size = 16 + len(box)
        head = _SHORT[size] if size < 256 else _pack_long(2, size)
        return b"".join((head, _MESSAGE, short, box))

    def reseal(self, command: bytes) -> bytes:
        """Seal a command already encoded in clear (its frame header is dropped)."""
        body = command[9 if command[0] & 2 else 2 :]
        return self.encode_command(body[1 : 1 + body[0]], body[1 + body[0] :])

    def open(self, short: bytes, box: bytes, frame: Any) -> bytes:
        """Open one MESSAGE (its short nonce and box): the flags byte, then the payload.

        Raises:
            ProtocolError: the nonce is not above the peer's last one (a replay), or the box
                does not verify (tampered, or sealed with another key).
        """
        nonce = int.from_bytes(short, "big")
        if nonce <= self._peer_nonce:
            raise _fail(f"MESSAGE nonce {nonce} is not above the last one, "
                        f"{self._peer_nonce}: a replayed or reordered frame", frame)
        try:
            plain = self._unseal(box, self._theirs + short, self._key)
        except _CryptoError:
            raise _fail("MESSAGE does not verify: tampered, or not sealed by our peer",
                        frame) from None
        if not plain:
            raise _fail("MESSAGE without its flags byte", frame)
        self._peer_nonce = nonce
        return plain  # type: ignore[no-any-return]


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


def receive_sealed(conn: Any, events: list) -> None:
    """ZMTPConnection's reading loop once CURVE traffic flows: every frame is a MESSAGE.

    Works on the connection's buffer like `ZMTPConnection._receive_frames` (same fields, same
    compaction); a sealed command (PING, SUBSCRIBE...) goes to its ``_receive_command``.
    """
    buf = conn._buf
    end = len(buf)
    pos = conn._pos
    frames = conn._frames
    total = conn._total
    limit = conn._limit
    sealer = conn._sealer
    open_ = sealer.open
    bare = conn._bare
    append = events.append
    need = 1
    view = memoryview(buf)
    inplace = _ffi.from_buffer(buf) if _lib is not None else None
    unseal = _lib.crypto_box_open_easy_afternm if _lib is not None else None
    theirs, key = sealer._theirs, sealer._key
    try:
        while pos < end:
            flags = buf[pos]
            if flags == 0 or flags == 4:
                if end - pos < 2:
                    need = 2
                    break
                size = buf[pos + 1]
                start = pos + 2
            elif flags == 2 or flags == 6:
                if end - pos < 9:
                    need = 9
                    break
                size = _unpack_size(buf, pos + 1)[0]
                start = pos + 9
                if total + size - 33 > limit:
                    raise MessageTooLarge(
                        f"peer announced a sealed frame of {size} bytes, making a message of "
                        f"over {total + size - 33} bytes; maxmsgsize is {limit}",
                        bytes(view[pos:start]))
            else:
                raise _fail(f"frame flags 0x{flags:02x} on a CURVE connection, where every "
                            "frame is a sealed MESSAGE", view[pos:])
            stop = start + size
            if stop > end:
                need = stop - pos
                break
            if size < 33 or buf[start : start + 8] != _MESSAGE:
                raise _fail("a CURVE connection carries only MESSAGE commands once ready",
                            view[pos:stop])
            if inplace is not None:  # opened where it lies: the plaintext follows the MAC
                nonce = _unpack_size(buf, start + 8)[0]
                if nonce <= sealer._peer_nonce:
                    open_(bytes(view[start + 8 : start + 16]), b"", view[pos:stop])  # a replay
                if unseal(inplace + (start + 32), inplace + (start + 16), size - 16,
                          theirs + buf[start + 8 : start + 16], key) != 0:
                    raise _fail("MESSAGE does not verify: tampered, or not sealed by our peer",
                                view[pos:stop])
                sealer._peer_nonce = nonce
                plain, p0 = view, start + 32
            else:
                plain = memoryview(open_(bytes(view[start + 8 : start + 16]),
                                         bytes(view[start + 16 : stop]), view[pos:stop]))
                p0, stop = 0, len(plain)
            pos = start + size
            kind = plain[p0]
            if kind & 2:
                conn._receive_command(bytes(plain[p0:stop]), 1, events)
                if conn._state is _CLOSED:
                    pos = end
                    break
                continue
            size = stop - p0 - 1
            if total + size > limit:
                raise MessageTooLarge(f"a sealed frame of {size} bytes makes a message of "
                                      f"{total + size} bytes; maxmsgsize is {limit}", b"")
            frames.append(bytes(plain[p0 + 1 : stop]))
            if kind & 1:
                total += size
                continue
            append(frames if bare else Message(frames))
            frames = []
            total = 0
    finally:
        if inplace is not None:
            _ffi.release(inplace)
        view.release()
    conn._frames = frames
    conn._total = total
    conn._need = need
    if pos >= end:
        buf.clear()
        pos = 0
    elif pos > _COMPACT_AT and pos > end - pos:
        del buf[:pos]
        pos = 0
    conn._pos = pos

