"""CURVE traffic (RFC 26's MESSAGE): sealing our frames and opening the peer's, once keys agree.

This module must not know about the handshake that agreed the key (`_zmtp_curve` does it) nor
about sockets: it is given the precomputed box key and the nonce prefixes, and works on bytes.
"""

# How this works
# --------------
# Every frame travels as a MESSAGE, in an ordinary frame header (see `_zmtp_curve`):
#     [flags, size][\x07MESSAGE][short nonce: 8-byte counter][box]
#     box = crypto_box_easy_afternm(flags byte + frame, prefix16 + short nonce, key)
# The crypto is libsodium's; for small frames the cost is Python's, per call and per object. So
# both directions work in place, with one libsodium call per frame through the cffi handle PyNaCl
# loaded, on pointers made once per batch:
#
# - Sealing (`Sealer.encode_messages`): a batch of queued messages is laid out in one fresh
#   buffer (sized from the first message and the queue's length, grown if need be). For a
#   one-frame message under 223 bytes one struct.pack_into (a Struct per frame size) writes the
#   frame header, the name, the short nonce, the flags byte and the frame; other frames get their
#   header packed and are copied by a slice assignment. ``crypto_box_easy_afternm(c, c, ...)`` then seals it where it lies (libsodium
#   lets c and m overlap: it moves the plaintext past the MAC's room). The full 24-byte nonce is
#   packed into a small buffer the sealer keeps, whose cffi pointer is made once.
# - Opening (`receive_sealed`): one struct.unpack_from reads a frame's header, name and short
#   nonce, the nonce as 8 big-endian bytes, which compare as the counters do: one not above the
#   last is refused (a replay, or frames reordered). ``crypto_box_open_easy_afternm(c, c, ...)``
#   (the nonce: the peer's prefix + those 8 bytes) verifies the MAC first and only then decrypts
#   in place, the plaintext landing where the MAC was; one more unpack takes out the flags byte
#   and the frame. Nothing is copied out or delivered before its MAC verified.
# The key is crypto_box_beforenm's, computed once per connection at the end of the handshake.
#
# Without PyNaCl's cffi handle (should its private layout change) PyNaCl's public functions do
# the same, with a copy or two per frame.

from __future__ import annotations

import struct
from collections import deque
from typing import Any

from ..errors import MessageTooLarge
from ._zmtp_events import ConnectionState, Message
from ._zmtp_wire import _compact, _fail

try:
    import nacl.bindings as _nacl  # importing it runs sodium_init (libsodium's CPU dispatch)
    from nacl.exceptions import CryptoError as _CryptoError
except ImportError:  # pragma: no cover - depends on the environment
    _nacl = None
    _CryptoError = Exception
try:  # libsodium itself, as PyNaCl loaded it
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib
except ImportError:  # pragma: no cover - depends on PyNaCl's layout
    _ffi = _lib = None

__all__ = ["Sealer", "receive_sealed"]

_MESSAGE = b"\x07MESSAGE"
_CLOSED = ConnectionState.CLOSED
_pack = struct.Struct(">Q").pack
_pack_long = struct.Struct(">BQ").pack
_SHORT = tuple(bytes((0, n)) for n in range(256))  # frame headers of short sealed frames
_unpack_size = struct.Struct(">Q").unpack_from
# header, name and short nonce of a sealed frame (short and long frame header); when sealing,
# the flags byte inside the box follows
_head = struct.Struct(">BB8s8s").unpack_from
_long_head = struct.Struct(">BQ8s8s").unpack_from
_seal_short = struct.Struct(">BB8sQB").pack_into
_seal_long = struct.Struct(">BQ8sQB").pack_into
_nonce_into = struct.Struct(">Q").pack_into
_OVERHEAD = 42  # at most, per frame: a long header (9), the name (8), nonce (8), MAC, flags byte
_SHORT_MAX = 256 - 33  # frames under this many bytes are sealed in a short frame
# For each frame size under _SHORT_MAX: pack a short sealed frame's header, name, short nonce,
# the flags byte and the frame, ready to be sealed in place. For each sealed frame size under
# 256: take the flags byte and the frame out of the opened box. Filled when the first Sealer is
# made (150 KB: not for programs that never use CURVE).
_SHORT_PACKERS: list = []
_TAKERS: list = []


def _make_tables() -> None:
    _SHORT_PACKERS[:] = [struct.Struct(f">BB8sQB{size}s").pack_into for size in range(_SHORT_MAX)]
    _TAKERS[:] = [struct.Struct(f"B{max(size - 33, 0)}s").unpack_from for size in range(256)]


class Sealer:
    """Encrypts our frames and commands as MESSAGE commands and opens the peer's.

    Args:
        key: the precomputed box key (crypto_box_beforenm of the transient keys).
        ours, theirs: the 16-byte nonce prefixes we send with and the peer sends with.
        nonce: our next short nonce. peer_nonce: the last short nonce the peer used.
    """

    __slots__ = ("_key", "_ours", "_theirs", "_nonce", "_peer_nonce", "_send_nonce", "_send_np")

    def __init__(self, key: bytes, ours: bytes, theirs: bytes, nonce: int,
                 peer_nonce: int) -> None:
        self._key = key
        self._ours = ours
        self._theirs = theirs
        self._nonce = nonce
        self._peer_nonce = peer_nonce
        # the full nonce libsodium reads when sealing: the prefix, then the counter, packed
        # per frame
        self._send_nonce = bytearray(ours + bytes(8))
        if _lib is not None:
            self._send_np = _ffi.from_buffer(self._send_nonce)
        if not _TAKERS:
            _make_tables()

    def encode_message(self, frames: Any) -> bytes | bytearray:
        """Seal a whole message, one MESSAGE per frame, all but the last flagged MORE.

        Raises:
            ValueError: ``frames`` is empty.
        """
        if not frames:
            raise ValueError("a message has at least one frame")
        return self.encode_messages(deque((frames,)), 0)

    def encode_messages(self, queue: deque, limit: int) -> bytes | bytearray:
        """Seal messages taken from the left of ``queue`` until the output reaches ``limit``.

        Args:
            queue: messages (sequences of bytes-like frames of single bytes); those sealed
                are popped, the first one always.
            limit: stop once this many bytes are sealed (one message may pass it).

        Returns:
            the wire bytes, one MESSAGE per frame.

        Raises:
            ValueError: the first message has no frames; TypeError: a frame is not bytes-like.
                The bad message is dropped from the queue; a bad message after the first
                stays queued, and the messages before it are returned (the next call raises).
        """
        if _lib is None:
            return self._encode_public(queue, limit)
        first = queue[0]
        try:
            per = _OVERHEAD * len(first)
            for frame in first:
                per += len(frame)
        except TypeError:
            queue.popleft()
            raise TypeError("a message is a sequence of bytes-like frames") from None
        cap = per + min(per * (len(queue) - 1), limit)  # grown if the others are larger
        out = bytearray(cap)
        base = _ffi.from_buffer(out)
        boxes = base + 18  # where the box of a short frame at pos starts: boxes + pos
        n = self._nonce
        key, nonce, np = self._key, self._send_nonce, self._send_np
        seal = _lib.crypto_box_easy_afternm
        popleft = queue.popleft
        packers, nonce_into, name = _SHORT_PACKERS, _nonce_into, _MESSAGE
        pos = 0  # where the next message goes; the end of what is sealed
        try:
            while queue and pos <= limit:
                msg = popleft()
                try:
                    if len(msg) == 1:  # the common case: a one-frame message
                        frame = msg[0]
                        size = len(frame)
                        if size < _SHORT_MAX:
                            end = pos + 35 + size
                            if end > cap:
                                base, boxes, cap = _grow(out, base, end)
                            packers[size](out, pos, 0, size + 33, name, n, 0, frame)
                            nonce_into(nonce, 16, n)
                            c = boxes + pos
                            seal(c, c, size + 1, np, key)
                            n += 1
                            pos = end
                            continue
                        end = pos + 42 + size  # a long frame
                        if end > cap:
                            base, boxes, cap = _grow(out, base, end)
                        _seal_long(out, pos, 2, size + 33, name, n, 0)
                        out[pos + 26 : end - 16] = frame
                        nonce_into(nonce, 16, n)
                        c = base + (pos + 25)
                        seal(c, c, size + 1, np, key)
                        n += 1
                        pos = end
                        continue
                    if not msg:
                        raise ValueError("a message has at least one frame")
                    p = pos
                    for frame in msg:
                        p += len(frame) + _OVERHEAD
                    if p > cap:
                        base, boxes, cap = _grow(out, base, p)
                    p = pos
                    last = len(msg) - 1
                    for i, frame in enumerate(msg):
                        size = len(frame) + 33
                        if size < 256:
                            _seal_short(out, p, 0, size, name, n, i < last)
                            box = p + 18
                        else:
                            _seal_long(out, p, 2, size, name, n, i < last)
                            box = p + 25
                        end = box + size - 16
                        out[box + 1 : end - 16] = frame
                        nonce_into(nonce, 16, n)
                        c = base + box
                        seal(c, c, size - 32, np, key)
                        n += 1
                        p = end
                    pos = p  # the whole message is sealed
                except (TypeError, ValueError, BufferError, struct.error) as exc:
                    frames = _as_bytes(msg)
                    if frames is not None:  # bytes-like frames struct does not take
                        queue.appendleft(frames)
                        continue
                    if pos:  # send what came before; the next call raises for this one
                        queue.appendleft(msg)
                        break
                    if isinstance(exc, ValueError):
                        raise
                    raise TypeError("a message is a sequence of bytes-like frames") from None
        finally:
            _ffi.release(base)
            self._nonce = n
        del out[pos:]
        return out

    def _encode_public(self, queue: deque, limit: int) -> bytes:
        """encode_messages through PyNaCl's public functions (a copy or two per frame)."""
        seal, key, ours = _nacl.crypto_box_easy_afternm, self._key, self._ours
        out: list[bytes] = []
        append = out.append
        size_out = 0
        while queue and size_out <= limit:
            frames = queue.popleft()
            if not frames:
                raise ValueError("a message has at least one frame")
            last = len(frames) - 1
            for i, frame in enumerate(frames):
                short = _pack(self._nonce)
                self._nonce += 1
                box = seal((b"\x01" if i < last else b"\x00") + frame, ours + short, key)
                size = 16 + len(box)
                append(_SHORT[size] if size < 256 else _pack_long(2, size))
                append(_MESSAGE)
                append(short)
                append(box)
                size_out += size
        return b"".join(out)

    def encode_command(self, name: bytes, data: bytes = b"") -> bytes:
        """Seal a command (PING, PONG, SUBSCRIBE...) as a MESSAGE flagged as a command."""
        short = _pack(self._nonce)
        self._nonce += 1
        body = b"\x02" + bytes((len(name),)) + name + data
        box = _nacl.crypto_box_easy_afternm(body, self._ours + short, self._key)
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
            raise _replayed(nonce, self._peer_nonce, frame)
        try:
            plain = _nacl.crypto_box_open_easy_afternm(box, self._theirs + short, self._key)
        except _CryptoError:
            raise _tampered(frame) from None
        if not plain:
            raise _fail("MESSAGE without its flags byte", frame)
        self._peer_nonce = nonce
        return plain  # type: ignore[no-any-return]


def _grow(out: bytearray, base: Any, need: int) -> tuple[Any, Any, int]:
    """Make ``out`` (exported as ``base``) hold at least ``need`` bytes: a new export."""
    _ffi.release(base)
    out += bytes(max(need, 2 * len(out)) - len(out))
    base = _ffi.from_buffer(out)
    return base, base + 18, len(out)


def _as_bytes(msg: Any) -> list[bytes] | None:
    """``msg``'s frames as bytes if one of them is another bytes-like type; else None."""
    try:
        if all(type(frame) is bytes for frame in msg):
            return None
        return [memoryview(frame).tobytes() for frame in msg]
    except TypeError:
        return None


def _replayed(nonce: bytes | int, last: bytes | int, frame: Any) -> Exception:
    if isinstance(nonce, bytes):
        nonce, last = int.from_bytes(nonce, "big"), int.from_bytes(last, "big")  # type: ignore[arg-type]
    return _fail(f"MESSAGE nonce {nonce} is not above the last one, {last}: a replayed or "
                 "reordered frame", frame)


def _tampered(frame: Any) -> Exception:
    return _fail("MESSAGE does not verify: tampered, or not sealed by our peer", frame)


def _not_message(frame: Any) -> Exception:
    return _fail("a CURVE connection carries only MESSAGE commands once ready", frame)


def _bad_flags(flags: int, frame: Any) -> Exception:
    return _fail(f"frame flags 0x{flags:02x} on a CURVE connection, where every frame is a "
                 "sealed MESSAGE", frame)


def _too_large(size: int, total: int, limit: int, header: Any) -> Exception:
    return MessageTooLarge(f"peer sent a sealed frame of {size} bytes, making a message of "
                           f"over {total + size - 33} bytes; maxmsgsize is {limit}",
                           bytes(header))


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
    bare = conn._bare
    append = events.append
    need = 0  # 0: everything was read
    view = memoryview(buf)
    inplace = _lib is not None
    if inplace:
        base = _ffi.from_buffer(buf)
        unseal = _lib.crypto_box_open_easy_afternm
        key, theirs = sealer._key, sealer._theirs
    takers = _TAKERS
    limit33 = limit + 33  # the largest sealed frame within maxmsgsize
    peer = _pack(sealer._peer_nonce)  # 8 bytes big-endian: compared as bytes, as numbers
    last = end - 18  # a frame at or before this has its header, name and nonce here
    try:
        while pos <= last:
            flags, size, name, short = _head(buf, pos)
            if flags == 0 or flags == 4:
                box = pos + 18
            elif flags == 2 or flags == 6:
                if end - pos < 25:
                    break
                _, size, name, short = _long_head(buf, pos)
                if total + size - 33 > limit:
                    raise _too_large(size, total, limit, view[pos : pos + 9])
                box = pos + 25
            else:
                raise _bad_flags(flags, view[pos:])
            stop = box + size - 16
            if stop > end:
                need = stop - pos
                break
            if size < 33 or name != _MESSAGE:
                raise _not_message(view[pos:stop])
            if short <= peer:
                raise _replayed(short, peer, view[pos:stop])
            if inplace:  # verified, then opened where it lies: the plaintext replaces the MAC
                c = base + box
                if unseal(c, c, size - 16, theirs + short, key):
                    raise _tampered(view[pos:stop])
                peer = short
                pos = stop
                if size < 256:  # the flags byte and the frame, in one go
                    kind, frame = takers[size](buf, box)
                else:
                    kind, frame = buf[box], None
                if kind == 0 and not frames:  # the common case: a one-frame message
                    if size > limit33:
                        raise _too_large(size, 0, limit, b"")
                    if frame is None:
                        frame = view[box + 1 : stop - 16].tobytes()
                    append([frame] if bare else Message([frame]))
                    continue
                plain, p0, p1 = view, box, stop - 16
            else:
                sealer._peer_nonce = int.from_bytes(peer, "big")
                plain = memoryview(sealer.open(short, bytes(view[box:stop]), view[pos:stop]))
                peer = short
                pos = stop
                kind = plain[0]
                p0, p1 = 0, len(plain)
            if kind & 2:
                conn._receive_command(plain[p0:p1].tobytes(), 1, events)
                if conn._state is _CLOSED:
                    pos = end
                    break
                continue
            size = p1 - p0 - 1
            if total + size > limit:
                raise _too_large(size + 33, total, limit, b"")
            frames.append(plain[p0 + 1 : p1].tobytes())
            if kind & 1:
                total += size
                continue
            append(frames if bare else Message(frames))
            frames = []
            total = 0
        if not need and pos < end:
            need = _need(buf, pos, end, total, limit, view)
    finally:
        sealer._peer_nonce = int.from_bytes(peer, "big")
        if inplace:
            _ffi.release(base)
        view.release()
    conn._frames = frames
    conn._total = total
    conn._need = need or 1
    conn._pos = _compact(buf, pos, end)


def _need(buf: bytearray, pos: int, end: int, total: int, limit: int, view: memoryview) -> int:
    """How many bytes the frame at ``pos`` needs to be read, its header being incomplete; or
    the error in what is already there."""
    flags = buf[pos]
    rest = end - pos
    if flags == 0 or flags == 4:
        if rest < 2:
            return 2
        stop = 2 + buf[pos + 1]
    elif flags == 2 or flags == 6:
        if rest < 9:
            return 9
        size = _unpack_size(buf, pos + 1)[0]
        if total + size - 33 > limit:
            raise _too_large(size, total, limit, view[pos : pos + 9])
        stop = 9 + size
    else:
        raise _bad_flags(flags, view[pos:])
    if stop > rest:
        return stop
    raise _not_message(view[pos : pos + stop])  # a whole frame, too short for a MESSAGE
