"""ZMTP wire format without state: its constants, frame and command encoders, READY metadata.

This module must not know about a connection's state (which phase the peer is in, what has
arrived or been sent): reading a stream of frames in order is `_zmtp_connection`'s job.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ..errors import ProtocolError
from ._zmtp_events import Cancel, Subscribe

#: Largest command body accepted from a peer. NULL-mechanism commands are tiny (READY is under
#: 100 bytes, PING at most 23): only a SUBSCRIBE/CANCEL topic or application metadata in READY
#: could come near, and a peer announcing more is refused before the body is buffered.
#: Messages are limited separately, by ``maxmsgsize``.
MAX_COMMAND_SIZE = 64 * 1024

_COMPACT_AT = 64 * 1024  # a read buffer drops its consumed prefix when it is over this
_GREETING_SIZE = 64
_NULL_MECHANISM = b"NULL" + bytes(16)
_MORE, _LONG, _COMMAND = 1, 2, 4
_MAX_FRAME = 2**63 - 1
_ERROR_DATA = 64  # how many offending bytes a ProtocolError carries

_SHORT_LAST = tuple(bytes((0, n)) for n in range(256))
_SHORT_MORE = tuple(bytes((_MORE, n)) for n in range(256))
_pack_long = struct.Struct(">BQ").pack
_unpack_size = struct.Struct(">Q").unpack_from


def parse_subscription(frame: bytes) -> Subscribe | Cancel | None:
    """Recognise a ZMTP 3.0 subscription frame (byte 1, or 0 to cancel, then the topic).

    libzmq's XPUB accepts this form from every peer, 3.1 included, so a PUB/XPUB socket layer
    should try it on what a SUB/XSUB sends, whatever the negotiated version.

    Args:
        frame: the first (only) frame of a message from a subscriber.

    Returns:
        Subscribe or Cancel with the topic; None if the frame is not a subscription.
    """
    if frame:
        if frame[0] == 1:
            return Subscribe(bytes(frame[1:]))
        if frame[0] == 0:
            return Cancel(bytes(frame[1:]))
    return None


def encode_message(frames: Sequence[bytes]) -> bytes:
    """Encode a whole message, every frame but the last flagged MORE.

    Args:
        frames: a sequence (not a bare ``bytes``) of bytes-like frames of single bytes
            (bytes, bytearray, memoryview of bytes); frames may be empty.

    Returns:
        The wire bytes of the message.

    Raises:
        ValueError: ``frames`` is empty.
    """
    if len(frames) == 1:
        frame = frames[0]
        size = len(frame)
        return (_SHORT_LAST[size] if size < 256 else _pack_long(_LONG, size)) + frame
    if not frames:
        raise ValueError("a message has at least one frame")
    parts = []
    append = parts.append
    for frame in frames:
        size = len(frame)
        append(_SHORT_MORE[size] if size < 256 else _pack_long(_MORE | _LONG, size))
        append(frame)
    size = len(frames[-1])
    parts[-2] = _SHORT_LAST[size] if size < 256 else _pack_long(_LONG, size)
    return b"".join(parts)


def _encode_command(name: bytes, data: bytes = b"") -> bytes:
    size = 1 + len(name) + len(data)
    head = bytes((_COMMAND, size)) if size < 256 else _pack_long(_COMMAND | _LONG, size)
    return b"".join((head, bytes((len(name),)), name, data))


def _encode_property(name: bytes, value: bytes) -> bytes:
    return b"".join((bytes((len(name),)), name, len(value).to_bytes(4, "big"), value))


def _fail(message: str, data: bytes | bytearray | memoryview) -> ProtocolError:
    return ProtocolError(message, bytes(data[:_ERROR_DATA]))


def _parse_metadata(data: bytes) -> dict[str, bytes]:
    properties: dict[str, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        size = data[pos]
        pos += 1
        if size == 0:
            raise _fail("READY has a property with an empty name", data)
        if pos + size + 4 > end:
            raise _fail("READY ends in the middle of a property", data)
        name = data[pos : pos + size].decode("latin-1").lower()
        value_size = int.from_bytes(data[pos + size : pos + size + 4], "big")
        pos += size + 4
        if pos + value_size > end:
            raise _fail(f"READY property {name!r} runs past the end of the command", data)
        if name in properties:
            raise _fail(f"READY repeats property {name!r}", data)
        properties[name] = data[pos : pos + value_size]
        pos += value_size
    return properties


def _compact(buf: bytearray, pos: int, end: int) -> int:
    """After a parse up to ``pos``: empty ``buf`` when all was used, or drop a consumed prefix
    over `_COMPACT_AT` bytes once it outweighs the rest. Returns the new parse position."""
    if pos >= end:
        buf.clear()
        return 0
    if pos > _COMPACT_AT and pos > end - pos:
        del buf[:pos]
        return 0
    return pos
