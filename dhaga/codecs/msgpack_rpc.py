"""Msgpack-RPC codec: bytes in, Request/Response/Notification values out, and back to bytes.

This module must not know about sockets, event loops, greenlets or msgid bookkeeping, nor what
any method means: it only checks that messages have the shape the msgpack-rpc spec gives them.
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
# UTF-8 decode to lone surrogates (the "surrogateescape" error handler) and encode back to the
# same bytes, so such text round-trips instead of breaking the connection.
#
# Encoding is one Packer.pack() per message. Packers are not safe to share between OS threads
# (the ``default`` hook runs Python code in the middle of a pack), so each thread has its own.

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Union

import msgpack
from msgpack import ExtType

from dhaga.errors import MessageTooLarge, ProtocolError

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE", "MAX_MSGID", "Request", "Response", "Notification", "Message",
    "ExtHandle", "Decoder", "encode_request", "encode_response", "encode_notification",
]

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
"""Largest encoded message a Decoder accepts by default: 64 MiB."""

MAX_MSGID = 2**32 - 1
"""Largest msgid the spec allows (msgids are 32-bit unsigned integers)."""

_REQUEST, _RESPONSE, _NOTIFICATION = 0, 1, 2
_HANDLE_KINDS = ("Buffer", "Window", "Tabpage")  # Neovim's ext type codes 0, 1, 2
_WALK_BUDGET = 4096  # headers the walker reads per unfinished message
_ERROR_DATA = 64  # bytes of the offending message kept on a ProtocolError


class Request(NamedTuple):
    """A call that wants an answer: ``[0, msgid, method, params]`` on the wire."""

    msgid: int
    method: str
    params: list[Any]

    def __eq__(self, other: object) -> bool:
        return type(other) is Request and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)


class Response(NamedTuple):
    """The answer to a Request: ``[1, msgid, error, result]``; ``error`` is None on success."""

    msgid: int
    error: Any
    result: Any

    def __eq__(self, other: object) -> bool:
        return type(other) is Response and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)


class Notification(NamedTuple):
    """A call that wants no answer: ``[2, method, params]``."""

    method: str
    params: list[Any]

    def __eq__(self, other: object) -> bool:
        return type(other) is Notification and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)


Message = Union[Request, Response, Notification]


@dataclass(frozen=True, slots=True)
class ExtHandle:
    """A Neovim Buffer, Window or Tabpage handle, sent as msgpack ext type 0, 1 or 2.

    The ext payload is the handle as a msgpack integer. Decoding turns those ext types into an
    ExtHandle and encoding turns an ExtHandle back into the same ext type.

    Attributes:
        code: the ext type code: 0 (Buffer), 1 (Window) or 2 (Tabpage).
        handle: the integer handle.
    """

    code: int
    handle: int

    def __post_init__(self) -> None:
        if type(self.code) is not int or not 0 <= self.code < len(_HANDLE_KINDS):
            raise ValueError(f"ExtHandle code must be 0, 1 or 2, got {self.code!r}")
        if type(self.handle) is not int:
            raise TypeError(f"ExtHandle handle must be an int, got {type(self.handle).__name__}")
        if not -(2**63) <= self.handle < 2**64:
            raise ValueError(f"ExtHandle handle {self.handle} does not fit in 64 bits")

    @property
    def kind(self) -> str:
        """Neovim's name for the handle's type: ``"Buffer"``, ``"Window"`` or ``"Tabpage"``."""
        return _HANDLE_KINDS[self.code]


# --- decoding -----------------------------------------------------------------------------------


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

_new_tuple = tuple.__new__
_new_object = object.__new__
_set_attribute = object.__setattr__

# First bytes of a msgpack integer: positive fixint, uint8-64, int8-64, negative fixint.
_INT_FIRST_BYTES = frozenset([*range(0x00, 0x80), *range(0xCC, 0xD4), *range(0xE0, 0x100)])


def _ext_hook(code: int, data: bytes) -> object:
    """Neovim handles become ExtHandle; any other ext type stays a plain ExtType."""
    if not 0 <= code < len(_HANDLE_KINDS):
        return ExtType(code, data)
    handle = None
    if data and data[0] in _INT_FIRST_BYTES:
        try:
            handle = msgpack.unpackb(data)
        except ValueError:  # truncated, or bytes after the integer
            pass
    if type(handle) is not int:
        raise ProtocolError(
            f"ext type {code} (Neovim {_HANDLE_KINDS[code]}) must carry a msgpack integer,"
            f" got payload {data[:_ERROR_DATA]!r}"
        )
    # What ExtHandle(code, handle) does, minus checks this data has passed already.
    ext = _new_object(ExtHandle)
    _set_attribute(ext, "code", code)
    _set_attribute(ext, "handle", handle)
    return ext


def _to_message(obj: object) -> Message:
    """Wrap a decoded value as a message, or raise ProtocolError saying what is wrong with it."""
    # Fast path for well-formed messages; _explain() finds what is wrong with the rest.
    if type(obj) is list:
        if len(obj) == 4:
            kind, msgid, third, fourth = obj
            if type(kind) is int and type(msgid) is int and 0 <= msgid <= MAX_MSGID:
                if kind == _RESPONSE:
                    return _new_tuple(Response, (msgid, third, fourth))
                if kind == _REQUEST and type(third) is str and type(fourth) is list:
                    return _new_tuple(Request, (msgid, third, fourth))
        elif len(obj) == 3:
            kind, method, params = obj
            if kind == _NOTIFICATION and type(kind) is int and type(method) is str:
                if type(params) is list:
                    return _new_tuple(Notification, (method, params))
    return _explain(obj)


def _explain(obj: object) -> Message:
    """The slow path of _to_message: each check in turn, with an error saying which failed."""
    if type(obj) is not list:
        raise ProtocolError(f"message must be an array, got {_describe(obj)}")
    if not obj:
        raise ProtocolError("message is an empty array")
    kind = obj[0]
    if type(kind) is not int or not _REQUEST <= kind <= _NOTIFICATION:
        raise ProtocolError(
            "message type must be 0 (request), 1 (response) or 2 (notification),"
            f" got {_describe(kind)}"
        )
    if kind == _NOTIFICATION:
        if len(obj) != 3:
            raise ProtocolError(f"notification must have 3 elements, got {len(obj)}")
        return Notification(_method(obj[1], "notification"), _params(obj[2], "notification"))
    name = "request" if kind == _REQUEST else "response"
    if len(obj) != 4:
        raise ProtocolError(f"{name} must have 4 elements, got {len(obj)}")
    msgid = obj[1]
    if type(msgid) is not int or not 0 <= msgid <= MAX_MSGID:
        raise ProtocolError(
            f"{name} msgid must be an integer in [0, 2**32), got {_describe(msgid)}"
        )
    if kind == _RESPONSE:
        return Response(msgid, obj[2], obj[3])
    return Request(msgid, _method(obj[2], name), _params(obj[3], name))


def _method(method: object, name: str) -> str:
    if type(method) is str:
        return method
    if type(method) is bytes:  # a peer that packs names as bin
        return method.decode("utf-8", "surrogateescape")
    raise ProtocolError(f"{name} method must be a string, got {_describe(method)}")


def _params(params: object, name: str) -> list[Any]:
    if type(params) is not list:
        raise ProtocolError(f"{name} params must be an array, got {_describe(params)}")
    return params


def _describe(value: object) -> str:
    """Name a decoded value's type and a bounded glimpse of it, for an error message."""
    name = type(value).__name__
    if isinstance(value, (str, bytes)):
        return f"{name} {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, (list, dict)):
        return f"{name} of length {len(value)}"
    if value is None or isinstance(value, (int, float)):
        return f"{name} {value!r}"
    return name  # an ext value: its repr could be as long as the message


def _malformed(exc: Exception) -> str:
    if isinstance(exc, msgpack.FormatError):
        return "malformed msgpack: invalid type byte"
    if isinstance(exc, msgpack.StackError):
        return "malformed msgpack: nested too deeply"
    return f"malformed msgpack: {exc}"


# --- encoding -----------------------------------------------------------------------------------

# Packing a bare int runs no Python code, so this one Packer cannot be entered by two threads at
# once (and msgpack guards it with a critical section on free-threaded builds).
_pack_handle = msgpack.Packer(buf_size=16).pack
_local = threading.local()


def _default(obj: object) -> object:
    """Packer hook: ExtHandle to its ext type; refuse everything else msgpack cannot pack."""
    if isinstance(obj, ExtHandle):
        return ExtType(obj.code, _pack_handle(obj.handle))
    if isinstance(obj, int):
        raise OverflowError(f"integer {obj} does not fit msgpack's range [-2**63, 2**64)")
    kind = type(obj)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    raise TypeError(f"cannot encode {name} object as msgpack")


def _pack(message: list[Any]) -> bytes:
    """Pack with this thread's Packer; retry with escapes if a str holds escaped bytes."""
    pack: Callable[[object], bytes]
    try:
        pack = _local.pack
    except AttributeError:
        pack = _local.pack = msgpack.Packer(use_bin_type=True, default=_default).pack
    try:
        return pack(message)
    except UnicodeEncodeError:  # rare: see "Strings" at the top
        try:
            pack = _local.pack_escaped
        except AttributeError:
            pack = _local.pack_escaped = msgpack.Packer(
                use_bin_type=True, default=_default, unicode_errors="surrogateescape"
            ).pack
        return pack(message)


def _check_msgid(msgid: object) -> None:
    if type(msgid) is not int:
        raise TypeError(f"msgid must be an int, got {type(msgid).__name__}")
    if not 0 <= msgid <= MAX_MSGID:
        raise ValueError(f"msgid must be in [0, 2**32), got {msgid}")


def _check_call(method: object, params: object) -> None:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params must be a list or tuple, got {type(params).__name__}")


def encode_request(msgid: int, method: str, params: list[Any] | tuple[Any, ...]) -> bytes:
    """Encode ``[0, msgid, method, params]``.

    Args:
        msgid: the call's id, in [0, 2**32).
        method: the method name.
        params: the arguments; a tuple is sent as an array too.

    Returns:
        The message's bytes.

    Raises:
        TypeError: an argument has the wrong type, or a value has no msgpack form.
        ValueError: ``msgid`` is out of range.
        OverflowError: an integer does not fit in 64 bits.
        UnicodeEncodeError: a str holds a lone surrogate that is not an escaped byte.
    """
    if type(msgid) is not int or not 0 <= msgid <= MAX_MSGID:
        _check_msgid(msgid)
    if type(method) is not str or type(params) is not list:
        _check_call(method, params)
    return _pack([_REQUEST, msgid, method, params])


def encode_response(msgid: int, error: Any, result: Any) -> bytes:
    """Encode ``[1, msgid, error, result]``.

    Args:
        msgid: the id of the Request answered, in [0, 2**32).
        error: None on success, otherwise any msgpack-able value describing the error.
        result: the call's result (None by convention when ``error`` is set).

    Returns:
        The message's bytes.

    Raises:
        TypeError: ``msgid`` is not an int, or a value has no msgpack form.
        ValueError: ``msgid`` is out of range.
        OverflowError: an integer does not fit in 64 bits.
        UnicodeEncodeError: a str holds a lone surrogate that is not an escaped byte.
    """
    if type(msgid) is not int or not 0 <= msgid <= MAX_MSGID:
        _check_msgid(msgid)
    return _pack([_RESPONSE, msgid, error, result])


def encode_notification(method: str, params: list[Any] | tuple[Any, ...]) -> bytes:
    """Encode ``[2, method, params]``.

    Args:
        method: the method name.
        params: the arguments; a tuple is sent as an array too.

    Returns:
        The message's bytes.

    Raises:
        TypeError: an argument has the wrong type, or a value has no msgpack form.
        OverflowError: an integer does not fit in 64 bits.
        UnicodeEncodeError: a str holds a lone surrogate that is not an escaped byte.
    """
    if type(method) is not str or type(params) is not list:
        _check_call(method, params)
    return _pack([_NOTIFICATION, method, params])
