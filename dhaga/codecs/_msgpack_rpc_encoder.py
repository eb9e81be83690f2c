"""Msgpack-RPC encoders: Request, Response and Notification fields in, the message's bytes out.

This module must not know about sockets, event loops, greenlets or msgid bookkeeping, nor how
bytes are decoded: it checks the arguments' types and ranges and packs them.
"""

# How this works
# --------------
# Encoding is one Packer.pack() per message. Packers are not safe to share between OS threads
# (the ``default`` hook runs Python code in the middle of a pack), so each thread has its own.
#
# Strings: a str the Decoder made from bytes that are not UTF-8 (Neovim sends those as str, see
# "Strings" in _msgpack_rpc_decoder) holds them as lone surrogates. A strict Packer refuses
# those, so on that rare failure the message is packed again by a Packer with the
# "surrogateescape" error handler, which turns them back into the same bytes.

from __future__ import annotations

import threading
from typing import Any, Callable

import msgpack
from msgpack import ExtType

from ._msgpack_rpc_messages import (
    _NOTIFICATION,
    _REQUEST,
    _RESPONSE,
    MAX_MSGID,
    ExtHandle,
)

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
