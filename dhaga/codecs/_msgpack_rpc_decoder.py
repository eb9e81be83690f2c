"""Msgpack-RPC Decoder: a byte stream from a peer in, checked messages out, within a size limit.

This module must not know about sockets, event loops, greenlets or msgid bookkeeping, nor how
messages are encoded; what makes a decoded value a valid message is `_msgpack_rpc_messages`'.
"""

# How this works
# --------------
# msgpack's streaming Unpacker builds objects while their bytes are still arriving, and some
# releases allocate a whole list the moment they read an array header. Fed a message before all
# of it has arrived, it would let a peer make us allocate for sizes it merely announced. And a
# message's bytes say little about what it costs once built: ``0x90`` (one byte) becomes an
# empty list (56 bytes, plus 8 for the slot holding it), so 16 MiB of them would become 1.2 GiB.
# So the Decoder reads the stream with three cheap tools:
#
# 1. A *scanner* Unpacker that only skip()s. It builds nothing; after each skip() its tell() is
#    the stream offset where a complete message ends. It exists only while a message is
#    unfinished: an idle decoder holds no Unpacker and no buffer (a few hundred bytes in all),
#    and a buffer grown for one large message is freed with it.
# 2. A header *walker* (``_walk``), Python code reading only the headers of the unfinished
#    message, as its bytes arrive: it keeps a lower bound on the message's size (each element an
#    array or map still owes takes at least one byte; a str/bin/ext header gives its body
#    length), so a header announcing 4 GiB fails at once, and it counts the message's objects,
#    so a message of more than max_objects values fails before any of them is built. Its work is
#    at most one Python step per byte fed (runs of one-byte values, such as 16 M ``0x90``, and of
#    same-type fixed-size ones, such as an array of int32, are skipped at C speed with a regex),
#    and it stops past max_objects values per message.
# 3. ``msgpack.unpackb``, called on each complete message (an Unpacker for a batch of them),
#    at most max_message_size bytes
#    holding at most max_objects values (a message under max_objects bytes cannot hold more;
#    a larger one the walker has counted), so everything built is bounded and backed by bytes
#    that really arrived.
#
# Incoming data is cut into slices that never let ``_pending`` grow past max_message_size + 1
# bytes, so neither the scanner's buffer nor ours holds more than that, however large the chunk.
# The work one ``feed()`` does is bounded by its length (walking) plus the messages it completes
# (building, each at most max_objects values): a caller feeding what one ``recv`` returned can
# let other work run between feeds.
#
# Strings: msgpack's str should hold UTF-8, but Neovim's strings are bytes and go out as str
# even when they are not UTF-8 (a line of a Latin-1 file). As pynvim does, bytes that are not
# UTF-8 decode to lone surrogates (the "surrogateescape" error handler); the encoders turn them
# back into the same bytes, so such text round-trips instead of breaking the connection.

from __future__ import annotations

import re
from typing import Any

import msgpack

from ..errors import MessageTooLarge, ProtocolError
from ._msgpack_rpc_messages import _ERROR_DATA, Message, _ext_hook, _to_message

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
"""Largest encoded message a Decoder accepts by default: 64 MiB."""

DEFAULT_MAX_OBJECTS = 1_000_000
"""Most values (every str, int, array, map... counts one) a message may hold by default."""

_SCAN_READ_SIZE = 4096  # the scanner's first buffer; it grows only as a message needs


class Decoder:
    """Turns a byte stream from a peer into msgpack-rpc messages.

    Values come out as msgpack's plain types only: None, bool, int, float, str, bytes, list,
    dict (keys str or bytes), ``msgpack.Timestamp``, ExtHandle for Neovim's ext types 0-2 and
    ``msgpack.ExtType`` for any other ext type. Nothing else is constructed. A str whose bytes
    are not UTF-8 keeps them as surrogate escapes, which the encoders turn back into the same
    bytes.

    After a ProtocolError the stream is corrupt: the decoder stays failed and every later
    ``feed()`` raises the same kind of error. Messages that arrived in the same ``feed()`` ahead
    of the bad bytes are dropped with them; the connection is to be closed.

    Args:
        max_message_size: largest encoded message accepted, in bytes (default 64 MiB). It also
            bounds every str, bin, ext, array and map inside, and the memory held for an
            unfinished message.
        max_objects: most values one message may hold, counting every value at every depth
            (the message's own array included); default 1,000,000. What a message costs once
            built is about 70 bytes per value at worst, plus its str/bin/ext bodies.

    Raises:
        ValueError: ``max_message_size`` or ``max_objects`` is not a positive integer.
    """

    __slots__ = (
        "_limit", "_max_objects", "_scanner", "_pending", "_offset", "_opts",
        "_walk_pos", "_walk_owed", "_walk_count", "_failure",
    )

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        max_objects: int = DEFAULT_MAX_OBJECTS,
    ) -> None:
        if type(max_message_size) is not int or max_message_size < 1:
            raise ValueError(f"max_message_size must be a positive int, got {max_message_size!r}")
        if type(max_objects) is not int or max_objects < 1:
            raise ValueError(f"max_objects must be a positive int, got {max_objects!r}")
        limit = max_message_size
        self._limit = limit
        self._max_objects = max_objects
        self._scanner: Any = None  # made when a message is unfinished, dropped when none is
        self._opts = _unpack_options(limit, max_objects)
        self._pending = bytearray()  # bytes of the unfinished message
        self._offset = 0  # scanner's offset of _pending[0], always a message boundary
        self._walk_pos = 0  # walker: offset in _pending of the next header to read
        self._walk_owed = 1  # walker: values the unfinished message still owes
        self._walk_count = 0  # walker: values of the unfinished message read so far
        self._failure: tuple[type[ProtocolError], str, bytes | None] | None = None

    @property
    def max_message_size(self) -> int:
        """Largest encoded message accepted, in bytes."""
        return self._limit

    @property
    def max_objects(self) -> int:
        """Most values one message may hold."""
        return self._max_objects

    @property
    def buffered(self) -> int:
        """Bytes held of an unfinished message (not zero at EOF: the peer hung up mid-message)."""
        return len(self._pending)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Take the next bytes of the stream and return the messages they complete.

        Args:
            data: the bytes that arrived, of any length (empty is fine).

        Returns:
            The messages completed by ``data``, in stream order; often empty.

        Raises:
            MessageTooLarge: a message is, or announces that it will be, over the size limit,
                or holds more than ``max_objects`` values.
            ProtocolError: the bytes are not msgpack, or a message does not have the shape the
                msgpack-rpc spec gives it; the message says what was wrong.
        """
        failure = self._failure
        if failure is not None:
            kind, text, bad = failure
            raise kind(f"decoder already failed: {text}", bad)
        try:
            return self._feed(memoryview(data).cast("B"))
        except ProtocolError as exc:
            # Not the exception itself: its traceback would keep the stream's bytes alive.
            self._failure = (type(exc), str(exc), exc.data)
            self._scanner = None
            self._pending = bytearray()
            raise

    def _feed(self, view: memoryview) -> list[Message]:
        messages: list[Message] = []
        limit = self._limit
        size = len(view)
        pos = 0
        while pos < size:
            pending = self._pending
            piece = view[pos : pos + limit + 1 - len(pending)]
            pos += len(piece)
            scanner = self._scanner
            if scanner is None:
                scanner = self._scanner = msgpack.Unpacker(
                    max_buffer_size=limit + 1, read_size=min(limit + 1, _SCAN_READ_SIZE))
            scanner.feed(piece)
            if pending:
                pending += piece
                data: bytearray | memoryview = pending
            else:
                data = piece
            ends = self._scan(data)
            if ends:
                start = self._offset
                cut = ends[-1] - start
                self._decode(data[:cut], start, ends, messages)
                self._offset = ends[-1]
                self._pending = bytearray(data[cut:])
                self._walk_pos, self._walk_owed, self._walk_count = 0, 1, 0
            elif data is piece:
                self._pending = bytearray(piece)
            if self._pending:
                self._check_unfinished()
            else:
                self._scanner = None  # nothing unfinished: free its buffer
                self._offset = 0  # offsets count from the next scanner's start
        return messages

    def _scan(self, data: bytearray | memoryview) -> list[int]:
        """Skip over every complete message the scanner holds; return their end offsets."""
        ends: list[int] = []
        skip = self._scanner.skip
        tell = self._scanner.tell
        while True:
            try:
                skip()
            except msgpack.OutOfData:
                return ends
            except ValueError as exc:  # FormatError, StackError
                begin = (ends[-1] if ends else self._offset) - self._offset
                data = data[begin : begin + _ERROR_DATA]
                raise ProtocolError(_malformed(exc), bytes(data)) from None
            ends.append(tell())

    def _decode(
        self, chunk: bytearray | memoryview, start: int, ends: list[int], out: list[Message]
    ) -> None:
        """Decode the complete messages in ``chunk``, which begins at stream offset ``start``."""
        limit = self._limit
        most = self._max_objects
        prev = start
        first = True
        for end in ends:
            size = end - prev
            if size > limit:
                raise MessageTooLarge(
                    f"message of {size} bytes is over max_message_size ({limit})",
                    bytes(chunk[prev - start : prev - start + _ERROR_DATA]),
                )
            if size > most:  # it could hold more values than allowed: count them
                if first:  # the unfinished message of earlier feeds: go on where we were
                    state = (self._walk_pos, self._walk_owed, self._walk_count)
                else:
                    state = (0, 1, 0)
                base = prev - start
                _, _, count = _walk(chunk, base + state[0], end - start, state[1], state[2], most)
                if count > most:
                    raise _too_many(most, bytes(chunk[base : base + _ERROR_DATA]))
            prev = end
            first = False
        opts = self._opts
        if len(ends) == 1:
            unpack = None
        else:  # one Unpacker for the batch: cheaper per message than unpackb(**opts)
            unpacker = msgpack.Unpacker(max_buffer_size=len(chunk), read_size=len(chunk), **opts)
            unpacker.feed(chunk)
            unpack = unpacker.unpack
        prev = start
        for end in ends:
            data = chunk[prev - start : end - start]
            try:
                value = msgpack.unpackb(data, **opts) if unpack is None else unpack()
                out.append(_to_message(value))
            except ProtocolError as exc:
                exc.data = bytes(data[:_ERROR_DATA])
                raise
            except (ValueError, TypeError) as exc:  # bad UTF-8, map key, timestamp, ...
                raise ProtocolError(_malformed(exc), bytes(data[:_ERROR_DATA])) from None
            prev = end

    def _check_unfinished(self) -> None:
        """Fail when the unfinished message is, or has announced it will be, over a limit."""
        pending = self._pending
        most = self._max_objects
        pos, owed, count = _walk(pending, self._walk_pos, len(pending), self._walk_owed,
                                 self._walk_count, most)
        self._walk_pos, self._walk_owed, self._walk_count = pos, owed, count
        if count > most:
            raise _too_many(most, bytes(pending[:_ERROR_DATA]))
        bound = max(pos + owed, len(pending))
        if bound > self._limit:
            if bound > len(pending):
                text = f"message announces at least {bound} bytes"
            else:
                text = f"unfinished message already holds {bound} bytes"
            raise MessageTooLarge(
                f"{text}, over max_message_size ({self._limit})", bytes(pending[:_ERROR_DATA])
            )


def _unpack_options(limit: int, max_objects: int) -> dict[str, Any]:
    """The keyword arguments of ``msgpack.unpackb`` for one complete message."""
    return {
        "raw": False,
        "use_list": True,
        "strict_map_key": True,  # only str/bytes keys: int keys would allow hash flooding
        "unicode_errors": "surrogateescape",  # see "Strings" above
        "ext_hook": _ext_hook,
        "max_str_len": limit,
        "max_bin_len": limit,
        "max_ext_len": limit,
        "max_array_len": min(limit, max_objects),  # every element takes at least one byte
        "max_map_len": min(limit // 2, max_objects // 2),  # every entry takes at least two
    }


def _too_many(most: int, data: bytes) -> MessageTooLarge:
    return MessageTooLarge(f"message holds more than max_objects ({most}) values", data)


def _walk(
    buf: bytearray | memoryview, pos: int, size: int, owed: int, count: int, most: int
) -> tuple[int, int, int]:
    """Read the headers of one message in ``buf[pos:size]``, from where the last walk stopped.

    Args:
        pos: offset of the next header; ``owed``: values the message still owes (1 at its
            start); ``count``: values read so far; ``most``: stop once count passes it.

    Returns:
        The new ``(pos, owed, count)``: ``owed`` is 0 once the message is complete; ``pos +
        owed`` is a lower bound on the message's size.
    """
    while owed and pos < size and count <= most:
        byte = buf[pos]
        if _ONE_BYTE[byte]:  # skip the run of one-byte values at C speed
            m = _ONE_BYTE_RUN.match(buf, pos, min(size, pos + owed))
            run = m.end() - pos  # type: ignore[union-attr] # at least this byte
            pos += run
            owed -= run
            count += run
            continue
        elif byte < 0x90:  # fixmap
            owed += 2 * (byte & 0x0F)
            pos += 1
        elif byte < 0xA0:  # fixarray
            owed += byte & 0x0F
            pos += 1
        elif byte < 0xC0:  # fixstr
            pos += 1 + (byte & 0x1F)
        else:
            kind, width, extra = _HEADERS[byte - 0xC0]
            if kind == _FIXED:  # skip the run of values of this type (int16, float64...)
                end = min(size, pos + owed * width)
                m = _FIXED_RUNS[byte - 0xC0].match(buf, pos, end)  # type: ignore[union-attr]
                run = 1 if m is None else (m.end() - pos) // width  # None: cut short by the end
                pos += run * width
                owed -= run
                count += run
                continue
            else:
                if pos + 1 + width > size:
                    break  # the length field has not arrived yet
                length = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
                if kind == _BODY:
                    pos += 1 + width + extra + length
                else:
                    pos += 1 + width
                    owed += extra * length
        owed -= 1
        count += 1
    return pos, owed, count


# One-byte values: positive and negative fixints, nil, false, true, [] and {}.
_ONE_BYTE_RUN = re.compile(rb"[\x00-\x80\x90\xc0\xc2\xc3\xe0-\xff]+")
_ONE_BYTE = tuple(bool(_ONE_BYTE_RUN.fullmatch(bytes((b,)))) for b in range(256))

# Headers with type bytes 0xC0-0xDF, for the walker: (_FIXED, total size, 0) for fixed-size
# values; (_BODY, width of the length field, header bytes after it) for str/bin/ext;
# (_CONTAINER, width of the count field, elements per count) for array16/32 and map16/32.
_FIXED, _BODY, _CONTAINER = 0, 1, 2
_HEADERS = (
    *[(_FIXED, 1, 0)] * 4,  # nil, never used (the scanner rejects it), false, true
    (_BODY, 1, 0), (_BODY, 2, 0), (_BODY, 4, 0),  # bin 8/16/32
    (_BODY, 1, 1), (_BODY, 2, 1), (_BODY, 4, 1),  # ext 8/16/32: the type byte follows the length
    (_FIXED, 5, 0), (_FIXED, 9, 0),  # float 32/64
    (_FIXED, 2, 0), (_FIXED, 3, 0), (_FIXED, 5, 0), (_FIXED, 9, 0),  # uint 8/16/32/64
    (_FIXED, 2, 0), (_FIXED, 3, 0), (_FIXED, 5, 0), (_FIXED, 9, 0),  # int 8/16/32/64
    (_FIXED, 3, 0), (_FIXED, 4, 0), (_FIXED, 6, 0), (_FIXED, 10, 0), (_FIXED, 18, 0),  # fixext
    (_BODY, 1, 0), (_BODY, 2, 0), (_BODY, 4, 0),  # str 8/16/32
    (_CONTAINER, 2, 1), (_CONTAINER, 4, 1),  # array 16/32
    (_CONTAINER, 2, 2), (_CONTAINER, 4, 2),  # map 16/32
)


# For each fixed-size type byte, a run of values of that type (the type byte, then its data).
_FIXED_RUNS = tuple(
    re.compile(b"(?:" + re.escape(bytes((0xC0 + i,))) + b".{%d})+" % (width - 1), re.DOTALL)
    if kind == _FIXED else None
    for i, (kind, width, _extra) in enumerate(_HEADERS)
)


def _malformed(exc: Exception) -> str:
    if isinstance(exc, msgpack.FormatError):
        return "malformed msgpack: invalid type byte"
    if isinstance(exc, msgpack.StackError):
        return "malformed msgpack: nested too deeply"
    return f"malformed msgpack: {exc}"
