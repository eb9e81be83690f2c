"""Fuzz targets for the three parsers that read bytes from the network, and their invariants.

Each target takes arbitrary bytes and fails (raises something other than the parser's
documented error) only on a bug: msgpack-rpc's Decoder, ZMTP's ZMTPConnection, and the HTTP
request head parser of dhaga.web. Knows nothing of atheris or hypothesis: `fuzz.py` and the
tests drive these.
"""

from __future__ import annotations

from dhaga.codecs.msgpack_rpc import Decoder
from dhaga.codecs.zmtp import ZMTPConnection
from dhaga.errors import ProtocolError
from dhaga.web.protocol import ChunkedDecoder, Limits, RequestError, head_end, parse_head


def _pieces(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut at places derived from ``seed`` (deterministic)."""
    out, pos, step = [], 0, seed % 13 + 1
    while pos < len(data):
        out.append(data[pos : pos + step])
        pos += step
        step = (step * 7 + seed) % 29 + 1
    return out


def msgpack_rpc(data: bytes) -> None:
    """The Decoder returns messages or raises ProtocolError, the same whole or in pieces."""
    whole = Decoder(max_message_size=4096, max_objects=256)
    try:
        expected: list | None = whole.feed(data)
    except ProtocolError:
        expected = None
        try:
            whole.feed(b"\x90")
        except ProtocolError:
            pass
        else:
            raise AssertionError("a failed decoder accepted more bytes") from None
    split = Decoder(max_message_size=4096, max_objects=256)
    got: list = []
    try:
        for piece in _pieces(data, data[0] if data else 0):
            got += split.feed(piece)
    except ProtocolError:
        if expected is not None:
            raise AssertionError(f"pieces failed where the whole gave {expected!r}") from None
        return
    if expected is None:
        raise AssertionError(f"the whole failed where pieces gave {got!r}")
    if repr(got) != repr(expected):  # repr: NaN != NaN
        raise AssertionError(f"pieces gave {got!r}, the whole {expected!r}")


_HANDSHAKE = None


def _handshake() -> bytes:
    global _HANDSHAKE
    if _HANDSHAKE is None:
        peer = ZMTPConnection("PUSH")
        _HANDSHAKE = peer.initiate() + peer.encode_ready()
    return _HANDSHAKE


def zmtp(data: bytes) -> None:
    """ZMTPConnection returns events or raises ProtocolError; odd first bytes start after a
    correct handshake, so the fuzzer reaches the frames."""
    if data and data[0] & 1:
        data = _handshake() + data[1:]
    conn = ZMTPConnection("PULL", maxmsgsize=4096)
    conn.initiate()
    try:
        for piece in _pieces(data, len(data)):
            for event in conn.receive_data(piece):
                if isinstance(event, list):
                    assert sum(map(len, event)) <= 4096, "a message over maxmsgsize"
    except ProtocolError:
        pass


_LIMITS = Limits(max_request_line=512, max_header_size=2048, max_headers=20, max_body_size=4096)


def http_head(data: bytes) -> None:
    """head_end/parse_head/ChunkedDecoder return or raise RequestError with a 4xx/5xx status."""
    try:
        end = head_end(data, _LIMITS)
        if end < 0:
            return
        head = parse_head(data[:end], _LIMITS)
        assert head.method and head.target is not None
        body = data[end + 4 :]
        if head.chunked:
            decoder = ChunkedDecoder(_LIMITS)
            out = b""
            for piece in _pieces(body, len(body)):
                out += decoder.feed(piece)
                if decoder.done:
                    break
            assert len(out) <= 4096, "a body over max_body_size"
    except RequestError as exc:
        assert 400 <= exc.status < 600, exc.status


TARGETS = {"msgpack_rpc": msgpack_rpc, "zmtp": zmtp, "http_head": http_head}
