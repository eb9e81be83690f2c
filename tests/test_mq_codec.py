"""The two codec additions the socket layer relies on: the events completed before a protocol
error, and knowing whether a frame was cut off."""

from __future__ import annotations

import pytest

from dhaga.codecs.zmtp import Message, ZMTPConnection, encode_message
from dhaga.errors import MessageTooLarge, ProtocolError

PEER = ZMTPConnection("PUSH")
HANDSHAKE = PEER.initiate() + PEER.encode_ready()


def connected(**kw) -> ZMTPConnection:
    conn = ZMTPConnection("PULL", **kw)
    conn.receive_data(HANDSHAKE)
    return conn


def test_protocol_error_carries_the_messages_before_the_bad_bytes():
    conn = connected()
    good = [[b"a"], [b"b", b""]]
    with pytest.raises(ProtocolError) as info:
        conn.receive_data(b"".join(encode_message(m) for m in good) + b"\x08bad")
    assert info.value.events == [Message(m) for m in good]


def test_message_too_large_carries_them_too():
    conn = connected(maxmsgsize=10)
    with pytest.raises(MessageTooLarge) as info:
        conn.receive_data(encode_message([b"ok"]) + encode_message([b"x" * 11]))
    assert info.value.events == [Message([b"ok"])]


def test_a_garbage_greeting_carries_no_events():
    with pytest.raises(ProtocolError) as info:
        ZMTPConnection("PULL").receive_data(b"HTTP/1.1 200 OK\r\n")
    assert info.value.events == []


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_partial_tells_a_cut_frame(cut):
    conn = connected()
    assert not conn.partial
    wire = encode_message([b"x" * 5])
    conn.receive_data(wire[:cut])
    assert conn.partial
    conn.receive_data(wire[cut:])
    assert not conn.partial


def test_partial_tells_a_cut_multipart_message():
    conn = connected()
    wire = encode_message([b"first", b"second"])
    first_frame = 2 + len(b"first")
    assert conn.receive_data(wire[:first_frame]) == []
    assert conn.partial  # one whole frame of an unfinished message
    assert conn.receive_data(wire[first_frame:]) == [Message([b"first", b"second"])]
    assert not conn.partial


def test_bare_messages_are_frame_lists_in_order_with_commands():
    conn = ZMTPConnection("XPUB", bare_messages=True)
    events = conn.receive_data(HANDSHAKE)
    assert conn.other_events == 2  # the greeting and READY
    wire = encode_message([b"a"]) + encode_message([b"b" * 300, b""])
    assert conn.receive_data(wire) == [[b"a"], [b"b" * 300, b""]]
    assert conn.other_events == 0  # all messages: a caller may extend its queue at once
    ping = ZMTPConnection.encode_ping(0, b"x")
    events = conn.receive_data(encode_message([b"c"]) + ping + encode_message([b"d"]))
    assert events[0] == [b"c"] and type(events[1]).__name__ == "Ping" and events[2] == [b"d"]
    assert conn.other_events == 1


def test_bare_and_plain_decoding_agree_on_every_split():
    wire = b"".join(encode_message(m) for m in ([b"x"], [b"", b"y" * 256], [b"z" * 70000]))
    for cut in range(0, len(wire), 997):
        plain, bare = connected(), ZMTPConnection("PULL", bare_messages=True)
        bare.receive_data(HANDSHAKE)
        got_plain = plain.receive_data(wire[:cut]) + plain.receive_data(wire[cut:])
        got_bare = bare.receive_data(wire[:cut]) + bare.receive_data(wire[cut:])
        assert [m.frames for m in got_plain] == got_bare
