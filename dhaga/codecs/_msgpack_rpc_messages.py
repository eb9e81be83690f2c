"""Msgpack-RPC messages: Request, Response, Notification, ExtHandle, and decoded values to them.

This module must not know about byte streams, buffers or size limits (that is the Decoder's
job, and packing the encoders'), nor what any method means: it only checks that messages have
the shape the msgpack-rpc spec gives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Union

import msgpack
from msgpack import ExtType

from ..errors import ProtocolError

MAX_MSGID = 2**32 - 1
"""Largest msgid the spec allows (msgids are 32-bit unsigned integers)."""

_REQUEST, _RESPONSE, _NOTIFICATION = 0, 1, 2
_HANDLE_KINDS = ("Buffer", "Window", "Tabpage")  # Neovim's ext type codes 0, 1, 2
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


# --- decoded values to messages -----------------------------------------------------------------

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
