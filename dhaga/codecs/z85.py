"""Z85 (ZeroMQ RFC 32): binary to printable text, four bytes to five characters, and back.

This module must not know what the bytes are (CURVE keys, usually) or where they go.
"""

from __future__ import annotations

import struct

__all__ = ["encode", "decode"]

_ALPHABET = (
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_POWERS = (85**4, 85**3, 85**2, 85, 1)


def encode(data: bytes | bytearray | memoryview) -> str:
    """Encode bytes as Z85 text.

    Args:
        data: a multiple of 4 bytes long (a CURVE key is 32 bytes: 40 characters).

    Raises:
        ValueError: the length is not a multiple of 4.
    """
    data = bytes(data)
    if len(data) % 4:
        raise ValueError(f"Z85 encodes a multiple of 4 bytes, not {len(data)}")
    out = bytearray()
    for (word,) in struct.iter_unpack(">I", data):
        out += bytes(_ALPHABET[word // p % 85] for p in _POWERS)
    return out.decode("ascii")


def decode(text: str | bytes) -> bytes:
    """Decode Z85 text to bytes.

    Args:
        text: a multiple of 5 characters of the Z85 alphabet (str or ASCII bytes).

    Raises:
        ValueError: bad length, a character outside the alphabet, or a group over 2^32 - 1.
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    if len(raw) % 5:
        raise ValueError(f"Z85 text is a multiple of 5 characters, not {len(raw)}")
    out = bytearray()
    for i in range(0, len(raw), 5):
        word = 0
        for c in raw[i : i + 5]:
            value = _VALUE.get(c)
            if value is None:
                raise ValueError(f"{chr(c)!r} at offset {i} is not a Z85 character")
            word = word * 85 + value
        if word > 0xFFFFFFFF:
            raise ValueError(f"Z85 group at offset {i} is over 2^32 - 1")
        out += word.to_bytes(4, "big")
    return bytes(out)
