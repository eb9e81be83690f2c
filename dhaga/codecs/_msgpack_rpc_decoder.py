"""Msgpack-RPC Decoder: a byte stream from a peer in, checked messages out, within a size limit.

This module must not know about sockets, event loops, greenlets or msgid bookkeeping, nor how
messages are encoded; what makes a decoded value a valid message is `_msgpack_rpc_messages`'.
"""

# How this works
# --------------
# msgpack's streaming Unpacker builds objects while their bytes are still arriving, and some
# releases allocate a whole list the moment they read an array header. Fed a message before all
# of it has arrived, it would let a peer make us allocate for sizes it merely announced. So the
# Decoder reads the stream with three cheap tools:
#
# 1. A *scanner* Unpacker that only skip()s. It builds nothing; after each skip() its tell() is
#    the stream offset where a complete message ends.
# 2. A *constructing* Unpacker that is only ever fed whole messages, each at most
#    max_message_size bytes, so everything it allocates is backed by bytes that really arrived.
# 3. A header *walker* for the unfinished message at the end of the stream, whose bytes wait in
#    ``_pending``. It keeps a lower bound on that message's size (each element an array or map
#    still owes takes at least one byte; a str/bin/ext header gives its body length) and fails
#    the moment the bound passes the limit, so a header announcing 4 GiB fails at once. To keep
#    its Python-speed cost bounded it reads at most _WALK_BUDGET headers per message; past
#    that the limit is enforced by counting bytes as they arrive.
#
# Incoming data is cut into slices that never let ``_pending`` grow past max_message_size + 1
# bytes, so neither Unpacker's buffer nor ours holds more than that, however large the chunk.
#
# Strings: msgpack's str should hold UTF-8, but Neovim's strings are bytes and go out as str
# even when they are not UTF-8 (a line of a Latin-1 file). As pynvim does, bytes that are not
# UTF-8 decode to lone surrogates (the "surrogateescape" error handler); the encoders turn them
# back into the same bytes, so such text round-trips instead of breaking the connection.

from __future__ import annotations

import msgpack

from dhaga.codecs._msgpack_rpc_messages import _ERROR_DATA, Message, _ext_hook, _to_message
from dhaga.errors import MessageTooLarge, ProtocolError

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
"""Largest encoded message a Decoder accepts by default: 64 MiB."""

_WALK_BUDGET = 4096  # headers the walker reads per unfinished message


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

    Raises:
        ValueError: ``max_message_size`` is not a positive integer.
    """

    __slots__ = (
        "_limit", "_scanner", "_unpacker", "_pending", "_offset",
        "_walk_pos", "_walk_owed", "_walk_budget", "_failure",
    )

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if type(max_message_size) is not int or max_message_size < 1:
            raise ValueError(f"max_message_size must be a positive int, got {max_message_size!r}")
        limit = max_message_size
        # Room for one byte more than the limit, so "over the limit" is observable.
        buffer_size = limit + 1
        read_size = min(buffer_size, 64 * 1024)  # initial buffer; grows only as data arrives
        self._limit = limit
        self._scanner = msgpack.Unpacker(max_buffer_size=buffer_size, read_size=read_size)
        self._unpacker = msgpack.Unpacker(
            raw=False,
            use_list=True,
            strict_map_key=True,  # only str/bytes keys: int keys would allow hash flooding
            unicode_errors="surrogateescape",  # see "Strings" above
            ext_hook=_ext_hook,
            max_buffer_size=buffer_size,
            read_size=read_size,
            max_str_len=limit,
            max_bin_len=limit,
            max_ext_len=limit,
            max_array_len=limit,  # every element takes at least one byte
            max_map_len=limit // 2,  # every entry takes at least two
        )
        self._pending = bytearray()  # bytes of the unfinished message
        self._offset = 0  # stream offset of _pending[0], always a message boundary
        self._walk_pos = 0  # walker: offset in _pending of the next header to read
        self._walk_owed = 1  # walker: elements the unfinished message still owes
        self._walk_budget = _WALK_BUDGET
        self._failure: ProtocolError | None = None

    @property
    def max_message_size(self) -> int:
        """Largest encoded message accepted, in bytes."""
        return self._limit

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
            MessageTooLarge: a message is, or announces that it will be, over the size limit.
            ProtocolError: the bytes are not msgpack, or a message does not have the shape the
                msgpack-rpc spec gives it; the message says what was wrong.
        """
        failure = self._failure
        if failure is not None:
            raise type(failure)(f"decoder already failed: {failure}", failure.data)
        try:
            return self._feed(memoryview(data).cast("B"))
        except ProtocolError as exc:
            self._failure = exc
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
            self._scanner.feed(piece)
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
                self._walk_pos, self._walk_owed, self._walk_budget = 0, 1, _WALK_BUDGET
            elif data is piece:
                self._pending = bytearray(piece)
            if self._pending:
                self._check_unfinished()
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
        prev = start
        for end in ends:
            if end - prev > self._limit:
                raise MessageTooLarge(
                    f"message of {end - prev} bytes is over max_message_size ({self._limit})",
                    bytes(chunk[prev - start : prev - start + _ERROR_DATA]),
                )
            prev = end
        self._unpacker.feed(chunk)
        unpack = self._unpacker.unpack
        append = out.append
        prev = start
        for end in ends:
            try:
                append(_to_message(unpack()))
            except ProtocolError as exc:
                exc.data = bytes(chunk[prev - start : min(end, prev + _ERROR_DATA) - start])
                raise
            except (ValueError, TypeError) as exc:  # bad UTF-8, map key, timestamp, ...
                data = bytes(chunk[prev - start : min(end, prev + _ERROR_DATA) - start])
                raise ProtocolError(_malformed(exc), data) from None
            prev = end

    def _check_unfinished(self) -> None:
        """Fail when the unfinished message is, or has announced it will be, over the limit."""
        pending = self._pending
        bound = max(self._walk(), len(pending))
        if bound > self._limit:
            if bound > len(pending):
                text = f"message announces at least {bound} bytes"
            else:
                text = f"unfinished message already holds {bound} bytes"
            raise MessageTooLarge(
                f"{text}, over max_message_size ({self._limit})", bytes(pending[:_ERROR_DATA])
            )

    def _walk(self) -> int:
        """Read more headers of the unfinished message; return a lower bound on its size."""
        buf = self._pending
        size = len(buf)
        pos, owed, budget = self._walk_pos, self._walk_owed, self._walk_budget
        while owed and budget and pos < size:
            byte = buf[pos]
            if byte < 0x80 or byte >= 0xE0:  # fixint
                pos += 1
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
                if kind == _FIXED:
                    pos += width
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
            budget -= 1
        self._walk_pos, self._walk_owed, self._walk_budget = pos, owed, budget
        return pos + owed


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


def _malformed(exc: Exception) -> str:
    if isinstance(exc, msgpack.FormatError):
        return "malformed msgpack: invalid type byte"
    if isinstance(exc, msgpack.StackError):
        return "malformed msgpack: nested too deeply"
    return f"malformed msgpack: {exc}"
