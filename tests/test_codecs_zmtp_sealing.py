"""CURVE's sealed traffic, sans I/O (dhaga/codecs/_zmtp_sealing.py): batches sealed in place are
byte for byte what PyNaCl's public functions make, batches stop where they should and lose
nothing on bad input, and the in-place reader refuses tampering, replays and oversized frames
wherever they fall in a batch."""

from __future__ import annotations

import struct
from collections import deque

import pytest

from dhaga.codecs import _zmtp_sealing
from dhaga.codecs._zmtp_events import ConnectionState
from dhaga.codecs._zmtp_sealing import Sealer
from dhaga.codecs.zmtp import Message, Ping, ZMTPConnection
from dhaga.errors import MessageTooLarge, ProtocolError

nacl = pytest.importorskip("nacl.bindings")

KEY = nacl.crypto_box_beforenm(nacl.crypto_box_keypair()[0], nacl.crypto_box_keypair()[1])
C, S = b"CurveZMQMESSAGEC", b"CurveZMQMESSAGES"
MESSAGES = [[b"x" * 64], [b""], [b"y" * 222], [b"z" * 223], [b"w" * 5000], [b"id", b"", b"body"],
            [b"a" * 300, b"b"], [bytes(range(256))]]


def reference(messages, first_nonce):
    """The wire bytes of ``messages``, frame by frame with PyNaCl's public functions."""
    out, n = [], first_nonce
    for frames in messages:
        for i, frame in enumerate(frames):
            short = struct.pack(">Q", n)
            flags = b"\x01" if i < len(frames) - 1 else b"\x00"
            box = nacl.crypto_box_easy_afternm(flags + frame, C + short, KEY)
            size = 16 + len(box)
            head = bytes((0, size)) if size < 256 else b"\x02" + struct.pack(">Q", size)
            out.append(head + b"\x07MESSAGE" + short + box)
            n += 1
    return b"".join(out)


def reader(maxmsgsize=None):
    """A connection past its handshake, opening what a Sealer(KEY, C, S, 3, 0) seals."""
    conn = ZMTPConnection("PULL", maxmsgsize=maxmsgsize)
    conn._sealer = Sealer(KEY, S, C, 2, 2)
    conn._state = ConnectionState.TRAFFIC
    return conn


def test_a_batch_is_what_pynacl_seals_frame_by_frame():
    sealer = Sealer(KEY, C, S, 3, 0)
    queue = deque(MESSAGES)
    wire = sealer.encode_messages(queue, 1 << 20)
    assert not queue and bytes(wire) == reference(MESSAGES, 3)
    assert sealer._nonce == 3 + sum(len(m) for m in MESSAGES)
    assert reader().receive_data(wire) == [Message(m) for m in MESSAGES]


def test_batches_stop_at_the_limit_and_keep_the_order():
    sealer = Sealer(KEY, C, S, 3, 0)
    messages = [[b"%d" % i * 100] for i in range(100)] + [[b"big" * 10_000]]
    queue = deque(messages)
    first = sealer.encode_messages(queue, 1000)
    assert 1000 <= len(first) < 1000 + 500 and len(queue) < 100  # one message may pass it
    wire = bytearray(first)
    while queue:
        wire += sealer.encode_messages(queue, 1000)  # the big one goes alone
    assert bytes(wire) == reference(messages, 3)
    conn = reader()
    assert [m for i in range(0, len(wire), 7) for m in conn.receive_data(wire[i : i + 7])] == [
        Message(m) for m in messages]


def test_a_bad_message_loses_nothing_before_it():
    sealer = Sealer(KEY, C, S, 3, 0)
    queue = deque([[b"one"], [b"two"], [], [b"three"], [b"four", 4], [b"five"]])
    conn = reader()
    assert conn.receive_data(sealer.encode_messages(queue, 1 << 20)) == [
        Message([b"one"]), Message([b"two"])]
    with pytest.raises(ValueError, match="at least one frame"):
        sealer.encode_messages(queue, 1 << 20)  # the empty message is dropped
    assert conn.receive_data(sealer.encode_messages(queue, 1 << 20)) == [Message([b"three"])]
    with pytest.raises(TypeError, match="bytes-like"):
        sealer.encode_messages(queue, 1 << 20)
    assert conn.receive_data(sealer.encode_messages(queue, 1 << 20)) == [Message([b"five"])]
    assert not queue


def test_frames_of_any_bytes_like_type():
    sealer = Sealer(KEY, C, S, 3, 0)
    queue = deque([[memoryview(b"view")], [bytearray(b"array"), memoryview(b"x" * 300)]])
    assert reader().receive_data(sealer.encode_messages(queue, 1 << 20)) == [
        Message([b"view"]), Message([b"array", b"x" * 300])]


def test_tampering_anywhere_in_a_batch_delivers_only_what_came_before():
    wire = bytearray(Sealer(KEY, C, S, 3, 0).encode_messages(deque(MESSAGES), 1 << 20))
    second = len(reference(MESSAGES[:2], 3))
    wire[second + 30] ^= 1  # inside the third message's box
    with pytest.raises(ProtocolError, match="does not verify") as info:
        reader().receive_data(wire)
    assert info.value.events == [Message(m) for m in MESSAGES[:2]]


def test_replayed_and_reordered_batches_are_refused():
    sealer = Sealer(KEY, C, S, 3, 0)
    one = sealer.encode_messages(deque([[b"1"], [b"2"]]), 1 << 20)
    two = sealer.encode_messages(deque([[b"3"]]), 1 << 20)
    conn = reader()
    assert conn.receive_data(one) == [Message([b"1"]), Message([b"2"])]
    with pytest.raises(ProtocolError, match="nonce 3 is not above the last one, 4"):
        conn.receive_data(one)
    conn = reader()
    conn.receive_data(two)
    with pytest.raises(ProtocolError, match="replayed or reordered"):
        conn.receive_data(one)
    conn = reader()  # a frame repeated inside one chunk
    with pytest.raises(ProtocolError, match="replayed") as info:
        conn.receive_data(bytes(one) + bytes(one))
    assert info.value.events == [Message([b"1"]), Message([b"2"])]


def test_a_small_frame_in_a_long_header():
    """libzmq writes long headers only from 256 bytes on, but a peer may use one for less."""
    short = bytes(Sealer(KEY, C, S, 3, 0).encode_messages(deque([[b"tiny"]]), 0))
    assert short[0] == 0
    long = b"\x02" + struct.pack(">Q", short[1]) + short[2:]
    assert reader().receive_data(long) == [Message([b"tiny"])]


def test_maxmsgsize_on_short_and_long_sealed_frames():
    sealer = Sealer(KEY, C, S, 3, 0)
    assert reader(100).receive_data(sealer.encode_messages(deque([[b"a" * 100]]), 0)) == [
        Message([b"a" * 100])]
    with pytest.raises(MessageTooLarge):
        reader(100).receive_data(sealer.encode_messages(deque([[b"a" * 101]]), 0))
    with pytest.raises(MessageTooLarge):
        reader(100).receive_data(sealer.encode_messages(deque([[b"a" * 60, b"b" * 60]]), 0))
    big = sealer.encode_messages(deque([[b"a" * 1000]]), 0)
    with pytest.raises(MessageTooLarge):
        reader(100).receive_data(big[:9])  # refused from the frame header alone


@pytest.mark.parametrize("garbage, match", [
    (b"\x00\x05hello", "only MESSAGE"),  # a whole frame, too short for a MESSAGE
    (b"\x00\x30\x07MESSAGf" + bytes(46), "only MESSAGE"),  # another command's name
    (b"\x01\x01a", "flags 0x01"),
    (b"\x02" + struct.pack(">Q", 10) + bytes(10), "only MESSAGE"),
])
def test_what_is_not_a_sealed_message(garbage, match):
    with pytest.raises(ProtocolError, match=match):
        reader().receive_data(garbage)


def test_partial_frames_wait_for_their_bytes():
    wire = Sealer(KEY, C, S, 3, 0).encode_messages(deque(MESSAGES), 1 << 20)
    conn = reader()
    events = []
    for i in range(len(wire)):
        events += conn.receive_data(wire[i : i + 1])
    assert events == [Message(m) for m in MESSAGES]


def test_without_cffi_the_public_functions_make_the_same_bytes(monkeypatch):
    monkeypatch.setattr(_zmtp_sealing, "_lib", None)
    sealer = Sealer(KEY, C, S, 3, 0)
    wire = sealer.encode_messages(deque(MESSAGES), 1 << 20) + sealer.encode_command(b"PING", b"\0\1")
    assert bytes(wire[: len(reference(MESSAGES, 3))]) == reference(MESSAGES, 3)
    assert reader().receive_data(wire) == [Message(m) for m in MESSAGES] + [Ping(1, b"")]
