"""The Clustered Hashmap Protocol (ZeroMQ RFC 12) as pure functions: frames in, messages out.

Every CHP message but ICANHAZ is five frames, ``[key, sequence, uuid, properties, body]``:

=========  =====================================================================
key        UTF-8 text; ``HUGZ`` (heartbeat) and ``KTHXBAI`` (end of snapshot) are reserved
sequence   8 bytes, unsigned, network order
uuid       empty or 16 bytes
properties zero or more ``name=value\\n`` lines, UTF-8
body       the value, any bytes; empty means "delete the key" (KTHXBAI: the subtree)
=========  =====================================================================

A snapshot request is ``["ICANHAZ?", subtree]``. Decoding checks every frame against `Limits`
and raises `BadMessage` saying what was wrong; nothing is evaluated or unpickled. This module
must not know about sockets, clocks or the scheduler.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..errors import BadMessage

__all__ = [
    "DEFAULT_LIMITS",
    "HUGZ",
    "ICANHAZ",
    "KTHXBAI",
    "RESERVED_KEYS",
    "KVMsg",
    "Limits",
    "decode_icanhaz",
    "decode_kvmsg",
    "decode_kvset",
    "decode_properties",
    "encode_icanhaz",
    "encode_properties",
    "format_ttl",
    "hugz",
    "kthxbai",
    "parse_ttl",
]  # fmt: skip

ICANHAZ = b"ICANHAZ?"
KTHXBAI = "KTHXBAI"
HUGZ = "HUGZ"
#: Keys a client may not set: they would read as commands.
RESERVED_KEYS = frozenset({HUGZ, KTHXBAI, ICANHAZ.decode()})

_SEQ = struct.Struct("!Q")


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a peer may send; anything larger is dropped as a `BadMessage`.

    Attributes:
        max_key: bytes in a key (and in a subtree).
        max_value: bytes in a value.
        max_properties: bytes in the properties frame.
        max_ttl: seconds; a longer ``ttl`` property is refused.
    """

    max_key: int = 1024
    max_value: int = 1 << 20
    max_properties: int = 4096
    max_ttl: float = 10 * 365 * 86400.0

    @property
    def max_message(self) -> int:
        """The largest whole CHP message, bytes (a transport-level `maxmsgsize`)."""
        return self.max_key + self.max_value + self.max_properties + 8 + 16 + 64


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class KVMsg:
    """One key-value message (KVSYNC, KVPUB, KVSET, HUGZ or KTHXBAI).

    Attributes:
        key: the key (text).
        sequence: the server's sequence number (0 from a client).
        uuid: 16 bytes naming this update across servers, or empty.
        properties: ``name -> value`` text pairs (``ttl`` is seconds to live).
        body: the value; empty means delete.
    """

    key: str
    sequence: int = 0
    uuid: bytes = b""
    properties: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def ttl(self) -> float | None:
        """The ``ttl`` property in seconds, or None (an invalid one raises `BadMessage`)."""
        text = self.properties.get("ttl")
        return None if text is None else parse_ttl(text)

    def with_sequence(self, sequence: int) -> KVMsg:
        """This message renumbered.

        Args:
            sequence: the new sequence number.

        Returns:
            a copy of this message with that sequence number.
        """
        return replace(self, sequence=sequence)

    def with_ttl(self, ttl: float | None) -> KVMsg:
        """This message with its ``ttl`` property replaced (None: removed).

        Args:
            ttl: seconds, or None to remove the property.

        Returns:
            a copy of this message with that ``ttl``.
        """
        props = {k: v for k, v in self.properties.items() if k != "ttl"}
        if ttl is not None:
            props["ttl"] = format_ttl(ttl)
        return replace(self, properties=props)

    def encode(self) -> list[bytes]:
        """The five frames."""
        return [
            self.key.encode(),
            _SEQ.pack(self.sequence),
            self.uuid,
            encode_properties(self.properties),
            self.body,
        ]


def format_ttl(seconds: float) -> str:
    """A TTL as the ``ttl`` property's text: whole seconds as integers, else to the ms."""
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0")


def parse_ttl(text: str, limits: Limits = DEFAULT_LIMITS) -> float:
    """The ``ttl`` property's seconds: a positive decimal number no larger than the limit.

    Raises:
        BadMessage: not a number, not finite, not positive, or too long.
    """
    if not text or len(text) > 32 or not all(c in "0123456789." for c in text):
        raise BadMessage(
            f"bad ttl property {text[:40]!r}: not a decimal number of seconds"
        )
    try:
        seconds = float(text)
    except ValueError:
        raise BadMessage(f"bad ttl property {text!r}: not a number") from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > limits.max_ttl:
        raise BadMessage(
            f"bad ttl property {text!r}: must be in (0, {limits.max_ttl:g}]"
        )
    return seconds


def encode_properties(properties: Mapping[str, str]) -> bytes:
    """``name=value\\n`` lines.

    Raises:
        ValueError: a name is empty or holds ``=`` or a newline, or a value holds a newline.
    """
    lines = []
    for name, value in properties.items():
        if not name or "=" in name or "\n" in name or "\n" in value:
            raise ValueError(f"property {name!r}={value!r} cannot be encoded")
        lines.append(f"{name}={value}\n")
    return "".join(lines).encode()


def decode_properties(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    """Parse the properties frame (the last line's newline may be missing).

    Raises:
        BadMessage: too long, not UTF-8, a line without ``=``, an empty or repeated name.
    """
    if len(data) > limits.max_properties:
        raise BadMessage(
            f"properties frame of {len(data)} bytes (limit {limits.max_properties})"
        )
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise BadMessage("properties frame is not UTF-8", [data]) from None
    props: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        name, eq, value = line.partition("=")
        if not eq or not name:
            raise BadMessage(f"property line {line[:40]!r} is not name=value", [data])
        if name in props:
            raise BadMessage(f"property {name!r} given twice", [data])
        props[name] = value
    return props


def _text(frame: bytes, what: str, limit: int, frames: list[bytes]) -> str:
    if len(frame) > limit:
        raise BadMessage(f"{what} of {len(frame)} bytes (limit {limit})", frames)
    try:
        return frame.decode()
    except UnicodeDecodeError:
        raise BadMessage(f"{what} is not UTF-8", frames) from None


def decode_kvmsg(frames: list[bytes], limits: Limits = DEFAULT_LIMITS) -> KVMsg:
    """Decode any five-frame CHP message (as a client or a backup server reads them).

    Raises:
        BadMessage: saying which frame was wrong.
    """
    if len(frames) != 5:
        raise BadMessage(f"{len(frames)} frames, a key-value message has 5", frames)
    key_b, seq_b, uuid, props_b, body = frames
    key = _text(key_b, "key", limits.max_key, frames)
    if not key:
        raise BadMessage("empty key", frames)
    if len(seq_b) != 8:
        raise BadMessage(f"sequence of {len(seq_b)} bytes, must be 8", frames)
    if len(uuid) not in (0, 16):
        raise BadMessage(f"uuid of {len(uuid)} bytes, must be 0 or 16", frames)
    if len(body) > limits.max_value:
        raise BadMessage(
            f"value of {len(body)} bytes (limit {limits.max_value})", frames[:4]
        )
    props = decode_properties(props_b, limits)
    if "ttl" in props:
        parse_ttl(props["ttl"], limits)
    return KVMsg(key, _SEQ.unpack(seq_b)[0], bytes(uuid), props, bytes(body))


def decode_kvset(frames: list[bytes], limits: Limits = DEFAULT_LIMITS) -> KVMsg:
    """Decode a client's KVSET: a key-value message whose key is not a reserved word.

    Raises:
        BadMessage: saying what was wrong.
    """
    msg = decode_kvmsg(frames, limits)
    if msg.key in RESERVED_KEYS:
        raise BadMessage(f"key {msg.key!r} is reserved", frames)
    return msg


def encode_icanhaz(subtree: str = "") -> list[bytes]:
    """A snapshot request for the keys starting with ``subtree`` (empty: all of them)."""
    return [ICANHAZ, subtree.encode()]


def decode_icanhaz(frames: list[bytes], limits: Limits = DEFAULT_LIMITS) -> str:
    """The subtree a snapshot request asks for.

    Raises:
        BadMessage: not two frames, not ``ICANHAZ?``, or a bad subtree.
    """
    if len(frames) != 2:
        raise BadMessage(f"snapshot request of {len(frames)} frames, must be 2", frames)
    if frames[0] != ICANHAZ:
        raise BadMessage(f"snapshot request command {bytes(frames[0][:16])!r}", frames)
    return _text(frames[1], "subtree", limits.max_key, frames)


def kthxbai(sequence: int, subtree: str) -> list[bytes]:
    """The end of a snapshot: the sequence it is at, and the subtree it covered."""
    return KVMsg(KTHXBAI, sequence, body=subtree.encode()).encode()


def hugz(sequence: int) -> list[bytes]:
    """A heartbeat. RFC 12 shows a zero sequence; we send the server's current one, which a
    client that reads every update can use to notice one it missed (older clients drop it as
    not newer, as they must)."""
    return KVMsg(HUGZ, sequence).encode()
