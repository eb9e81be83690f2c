"""Socket options: names, defaults and validation, in libzmq's units (milliseconds, messages).

This module must not know what any option does; it only checks and stores values.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar, overload

from ..codecs.z85 import decode as decode_z85

__all__ = ["Option", "OPTIONS"]

T = TypeVar("T")


def _ms(lowest: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an int number of milliseconds, got {value!r}")
        if value < lowest:
            raise ValueError(f"{value} is below the lowest allowed value, {lowest}")
        return value

    return check


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a count >= 0 (0: no limit), got {value!r}")
    return value


def _flag(value: Any) -> bool:
    return bool(value)


def _routing_id(value: Any) -> bytes:
    if isinstance(value, str):
        raise TypeError("routing_id must be bytes, not str")
    value = bytes(value)
    if len(value) > 255 or value[:1] == b"\0":
        raise ValueError("routing_id is at most 255 bytes and must not start with a zero byte")
    return value


def _minor(value: Any) -> int:
    if value not in (0, 1):
        raise ValueError("zmtp_minor is 1 (speak ZMTP 3.1) or 0 (act as a ZMTP 3.0 peer)")
    return int(value)


def _maxmsgsize(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError("maxmsgsize is a size in bytes, or -1 for no limit")
    return value


def _credential(value: Any) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(raw) > 255:
        raise ValueError("a PLAIN username or password is at most 255 bytes")
    return raw


def _curve_key(value: Any) -> bytes:
    """A CURVE key as 40 characters of Z85 (str or bytes) or 32 raw bytes; b"" unsets it."""
    raw = value.encode("ascii", "replace") if isinstance(value, str) else bytes(value)
    if len(raw) == 40:
        return decode_z85(raw)
    if len(raw) in (0, 32):
        return raw
    raise ValueError(f"a CURVE key is 40 characters of Z85 or 32 raw bytes, not {len(raw)} bytes")


def _domain(value: Any) -> str:
    text = value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)
    if len(text.encode("utf-8")) > 255:
        raise ValueError("zap_domain is at most 255 bytes")
    return text


class Option(Generic[T]):
    """A socket option as an attribute: validated when set, stored in ``_<name>``.

    Args:
        default: the value a new socket starts with.
        check: validates and normalises a value, raising TypeError/ValueError.
        doc: one line for help().
    """

    __slots__ = ("name", "attr", "default", "check", "doc")

    def __init__(self, default: Any, check: Callable[[Any], Any], doc: str) -> None:
        self.default = default
        self.check = check
        self.doc = doc
        self.name = self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.attr = "_" + name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Option[T]: ...

    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj, self.attr)

    def __set__(self, obj: Any, value: T) -> None:
        try:
            setattr(obj, self.attr, self.check(value))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"option {self.name}: {exc}") from None


#: Every option: name -> (default, check, doc). Times are in milliseconds, as in libzmq.
OPTIONS: dict[str, tuple[Any, Callable[[Any], Any], str]] = {
    "sndhwm": (1000, _count, "messages queued per peer before send blocks or drops (0: no limit)"),
    "rcvhwm": (1000, _count, "messages queued per peer before reading from it pauses (0: none)"),
    "linger": (-1, _ms(-1), "ms close() waits for queued messages to go out (-1: until they have)"),
    "routing_id": (b"", _routing_id, "the identity announced to peers (REQ, DEALER, ROUTER)"),
    "rcvtimeo": (-1, _ms(-1), "ms recv() waits before raising dhaga.Timeout (-1: forever)"),
    "sndtimeo": (-1, _ms(-1), "ms send() waits before raising dhaga.Timeout (-1: forever)"),
    "router_mandatory": (False, _flag, "ROUTER: unroutable messages raise HostUnreachable"),
    "reconnect_ivl": (100, _ms(-1), "ms before reconnecting (-1: never reconnect)"),
    "reconnect_ivl_max": (0, _ms(0), "cap of the doubling reconnect interval (0: no backoff)"),
    "heartbeat_ivl": (0, _ms(0), "ms between PINGs sent on each connection (0: none)"),
    "heartbeat_ttl": (0, _ms(0), "the TTL announced in our PINGs, ms (rounded down to 100 ms)"),
    "heartbeat_timeout": (-1, _ms(-1), "ms without traffic after a PING before dropping (-1: ivl)"),
    "maxmsgsize": (-1, _maxmsgsize, "largest message accepted from a peer, bytes (-1: no limit)"),
    "handshake_ivl": (30000, _ms(0), "ms a new connection has to complete its handshake (0: none)"),
    "xpub_verbose": (False, _flag, "XPUB: pass on every subscription, not only new topics"),
    "zmtp_minor": (1, _minor, "1: speak ZMTP 3.1; 0: act as a ZMTP 3.0 peer (interop testing)"),
    "plain_server": (False, _flag, "PLAIN: be the server, judging clients' usernames and passwords"),
    "plain_username": (b"", _credential, "PLAIN client: the username (setting it selects PLAIN)"),
    "plain_password": (b"", _credential, "PLAIN client: the password"),
    "curve_server": (False, _flag, "CURVE: be the server (needs curve_secretkey, curve_publickey)"),
    "curve_publickey": (b"", _curve_key, "CURVE: our long-term public key (Z85 or 32 raw bytes)"),
    "curve_secretkey": (b"", _curve_key, "CURVE: our long-term secret key (Z85 or 32 raw bytes)"),
    "curve_serverkey": (b"", _curve_key, "CURVE client: the server's public key (selects CURVE)"),
    "zap_domain": ("", _domain, "ZAP domain our Authenticator is asked about (also for NULL)"),
}
