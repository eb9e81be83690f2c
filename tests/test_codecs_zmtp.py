"""Tests of dhaga.codecs.zmtp: byte tables, every error, round trips, and libzmq interop."""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhaga.codecs.zmtp import (
    MAX_COMMAND_SIZE,
    SOCKET_TYPES,
    Cancel,
    ConnectionState,
    Error,
    Greeting,
    Message,
    Ping,
    Pong,
    Ready,
    Subscribe,
    UnknownCommand,
    ZMTPConnection,
    compatible,
    encode_message,
    mismatch_reason,
    parse_subscription,
)
from dhaga.errors import MessageTooLarge, ProtocolError

try:
    import zmq
except ImportError:  # pragma: no cover - depends on the environment
    zmq = None

# -- byte tables ---------------------------------------------------------------------------------

NULL20 = b"NULL" + bytes(16)
OUR_GREETING_31 = b"\xff" + bytes(8) + b"\x7f\x03\x01" + NULL20 + b"\x00" + bytes(31)
OUR_GREETING_30 = b"\xff" + bytes(8) + b"\x7f\x03\x00" + NULL20 + b"\x00" + bytes(31)
# What libzmq 4.3 sends (captured): its padding is the 8-byte routing-id length + 1, not zeros,
# and it comes in three steps: 10 bytes, then 1, then 53, each after reading ours.
LIBZMQ_GREETING = bytes.fromhex("ff00000000000000017f0301") + NULL20 + bytes(32)
# READY commands, as libzmq 4.3 sends them (captured) and as RFC 23/37's worked example shows.
READY_PUSH = b"\x04\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x04PUSH"
READY_PULL = b"\x04\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x04PULL"
READY_DEALER = (
    b"\x04\x29\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER\x08Identity\x00\x00\x00\x00"
)
READY_REQ_ABC = (
    b"\x04\x29\x05READY\x0bSocket-Type\x00\x00\x00\x03REQ\x08Identity\x00\x00\x00\x03abc"
)
READY_ROUTER_RFC = b"\x04\x1c\x05READY\x0bSocket-Type\x00\x00\x00\x06ROUTER"


def greeting(major=3, minor=1, mechanism=b"NULL", as_server=0, padding=bytes(8)) -> bytes:
    """A peer's greeting, with any field changed."""
    return b"\xff" + padding + b"\x7f" + bytes((major, minor)) + mechanism.ljust(20, b"\0") + (
        bytes((as_server,)) + bytes(31)
    )


def command(name: bytes, data: bytes = b"") -> bytes:
    """A short command frame, built by hand (not by the codec under test)."""
    body = bytes((len(name),)) + name + data
    return bytes((4, len(body))) + body


def connected(socket_type="DEALER", peer_minor=1, peer_ready=READY_DEALER, **kwargs):
    """A connection past the handshake with a peer."""
    conn = ZMTPConnection(socket_type, **kwargs)
    events = conn.receive_data(greeting(minor=peer_minor) + peer_ready)
    assert [type(e) for e in events] == [Greeting, Ready]
    return conn


def feed_bytewise(conn: ZMTPConnection, data: bytes) -> list:
    events = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1])
    return events


def test_the_codec_imports_no_io():
    import ast
    import importlib
    import importlib.util

    # The public module and the private ones it is made of, found by following its imports.
    codec, todo, imported = set(), ["dhaga.codecs.zmtp"], set()
    while todo:
        name = todo.pop()
        codec.add(name)
        with open(importlib.import_module(name).__file__, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}  # fmt: skip
        package = name.rpartition(".")[0]  # relative imports resolve against the module's package
        names |= {importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                  if node.level else node.module
                  for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}  # fmt: skip
        todo += [n for n in names if n.startswith("dhaga.codecs.") and n not in codec]
        imported |= names
    assert imported - codec <= {"__future__", "struct", "collections", "collections.abc",
                                "dataclasses", "enum",
                                "typing", "dhaga.errors",
                                "nacl.bindings", "nacl.exceptions", "nacl.utils",
                                "nacl._sodium"}  # fmt: skip


# -- greeting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, OUR_GREETING_31),
        ({"minor": 0}, OUR_GREETING_30),
        ({"as_server": True}, OUR_GREETING_31[:32] + b"\x01" + bytes(31)),
    ],
)
def test_our_greeting_bytes(kwargs, expected):
    greeting_bytes = ZMTPConnection("PUSH", **kwargs).initiate()
    assert greeting_bytes == expected
    assert len(greeting_bytes) == 64


def test_libzmq_greeting_in_its_three_steps():
    conn = ZMTPConnection("PUSH")
    assert conn.receive_data(LIBZMQ_GREETING[:10]) == []
    assert conn.receive_data(LIBZMQ_GREETING[10:11]) == []
    assert conn.state is ConnectionState.GREETING and conn.minor is None
    assert conn.receive_data(LIBZMQ_GREETING[11:]) == [Greeting(3, 1, "NULL", False)]
    assert conn.state is ConnectionState.HANDSHAKE
    assert conn.minor == 1


def test_greeting_padding_and_filler_are_not_significant():
    conn = ZMTPConnection("PUSH")
    peer = greeting(padding=b"\xde\xad\xbe\xef\x01\x02\x03\x04")[:33] + b"\xaa" * 31
    assert conn.receive_data(peer) == [Greeting(3, 1, "NULL", False)]


@pytest.mark.parametrize(
    "peer_major, peer_minor, our_minor, negotiated",
    [(3, 0, 1, 0), (3, 1, 1, 1), (3, 7, 1, 1), (3, 1, 0, 0), (3, 0, 0, 0), (4, 0, 1, 1)],
)
def test_version_negotiation(peer_major, peer_minor, our_minor, negotiated):
    conn = ZMTPConnection("SUB", minor=our_minor)
    events = conn.receive_data(greeting(peer_major, peer_minor))
    assert events == [Greeting(peer_major, peer_minor, "NULL", False)]
    assert conn.minor == negotiated


@pytest.mark.parametrize("first", [b"G", b"\x00", b"\x7f"])
def test_garbage_fails_on_its_first_byte(first):
    conn = ZMTPConnection("PUSH")
    with pytest.raises(ProtocolError, match="0xff") as info:
        conn.receive_data(first)
    assert info.value.data == first
    assert conn.state is ConnectionState.FAILED
    with pytest.raises(ProtocolError, match="already failed"):
        conn.receive_data(b"\xff")


def test_zmtp_1_0_signature_fails_on_byte_9():
    conn = ZMTPConnection("PUSH")
    # A ZMTP 1.0 peer's identity frame with a long length: 0xff, 8 size bytes, flags 0x00.
    assert conn.receive_data(b"\xff" + bytes(7) + b"\x01") == []
    with pytest.raises(ProtocolError, match="byte 9 is 0x00"):
        conn.receive_data(b"\x00")


@pytest.mark.parametrize("major", [0, 1, 2])
def test_old_major_versions_are_refused(major):
    conn = ZMTPConnection("PUSH")
    assert conn.receive_data(greeting(major)[:10]) == []
    with pytest.raises(ProtocolError, match=f"major version {major}: only 3.x") as info:
        conn.receive_data(greeting(major)[10:11])
    assert info.value.data == greeting(major)[:11]


@pytest.mark.parametrize("mechanism", [b"PLAIN", b"CURVE", b"GSSAPI"])
def test_other_mechanisms_are_refused(mechanism):
    conn = ZMTPConnection("PUSH")
    assert conn.receive_data(greeting(mechanism=mechanism)[:31]) == []
    with pytest.raises(ProtocolError, match=f"'{mechanism.decode()}' mechanism; this socket uses 'NULL'"):
        conn.receive_data(greeting(mechanism=mechanism)[31:32])  # the mechanism's last byte


def test_constructor_validates_its_arguments():
    for kwargs in (
        {"socket_type": "STREAM"},
        {"socket_type": "push"},
        {"socket_type": "PUSH", "minor": 2},
        {"socket_type": "DEALER", "identity": b"\0abc"},
        {"socket_type": "DEALER", "identity": b"x" * 256},
        {"socket_type": "PUSH", "maxmsgsize": -1},
    ):
        with pytest.raises(ValueError):
            ZMTPConnection(**kwargs)


# -- READY ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "socket_type, identity, expected",
    [
        ("PUSH", b"", READY_PUSH),
        ("PULL", b"", READY_PULL),
        ("DEALER", b"", READY_DEALER),  # RFC 37's worked example, byte for byte
        ("REQ", b"abc", READY_REQ_ABC),
        ("ROUTER", b"", READY_DEALER.replace(b"DEALER", b"ROUTER")),  # libzmq 4.3 does this
    ],
)
def test_encode_ready_bytes(socket_type, identity, expected):
    assert ZMTPConnection(socket_type, identity=identity).encode_ready() == expected


@pytest.mark.parametrize(
    "ready, socket_type, identity",
    [
        (READY_PUSH, "PUSH", b""),
        (READY_DEALER, "DEALER", b""),
        (READY_REQ_ABC, "REQ", b"abc"),
        (READY_ROUTER_RFC, "ROUTER", b""),
    ],
)
def test_decode_ready(ready, socket_type, identity):
    conn = ZMTPConnection("ROUTER")
    events = conn.receive_data(greeting() + ready)
    assert events[1].socket_type == socket_type
    assert events[1].identity == identity
    assert conn.peer is events[1]
    assert conn.state is ConnectionState.TRAFFIC


def test_ready_property_names_are_case_insensitive():
    body = (
        b"\x05READY\x0bsOCKET-tYPE\x00\x00\x00\x03REQ\x08IDENTITY\x00\x00\x00\x02id"
        b"\x05X-App\x00\x00\x00\x00"
    )
    conn = ZMTPConnection("ROUTER")
    events = conn.receive_data(greeting() + bytes((4, len(body))) + body)
    assert events[1] == Ready(
        "REQ", b"id", {"socket-type": b"REQ", "identity": b"id", "x-app": b""}
    )


def test_handshake_complete_needs_both_readies():
    conn = ZMTPConnection("PUSH")
    conn.receive_data(greeting() + READY_PULL)
    assert not conn.handshake_complete
    conn.encode_ready()
    assert conn.handshake_complete


@pytest.mark.parametrize(
    "ready, match",
    [
        (command(b"READY", b"\x08Identity\x00\x00\x00\x00"), "no Socket-Type"),
        (command(b"READY"), "no Socket-Type"),
        (command(b"READY", b"\x0bSocket-Type\x00\x00\x00\x09PUSH"), "runs past the end"),
        (command(b"READY", b"\x0bSocket-Type\x00\x00"), "middle of a property"),
        (command(b"READY", b"\x00\x00\x00\x00\x00"), "empty name"),
        (command(b"READY", b"\x01A\x00\x00\x00\x00\x01a\x00\x00\x00\x00"), "repeats"),
        (command(b"PING", b"\x00\x00"), "expected the peer's READY command, got b'PING'"),
        (command(b"SUBSCRIBE", b"x"), "expected the peer's READY"),
        (b"\x00\x01x", "expected the peer's READY command, got a message"),
        (b"\x04\x00", "bad name length"),
        (b"\x04\x03\x05REA", "bad name length"),
    ],
)
def test_bad_handshakes(ready, match):
    conn = ZMTPConnection("PULL")
    conn.receive_data(greeting())
    with pytest.raises(ProtocolError, match=match) as info:
        conn.receive_data(ready)
    assert not isinstance(info.value, MessageTooLarge)
    assert info.value.data  # the offending bytes travel with the error
    assert conn.state is ConnectionState.FAILED


def test_ready_twice_is_refused():
    conn = connected()
    with pytest.raises(ProtocolError, match="READY twice"):
        conn.receive_data(READY_DEALER)


def test_error_during_handshake_closes():
    conn = ZMTPConnection("PUSH")
    events = conn.receive_data(greeting() + b"\x04\x0b\x05ERROR\x04nope" + b"\x00\x01x")
    assert events == [Greeting(3, 1, "NULL", False), Error("nope")]
    assert conn.state is ConnectionState.CLOSED
    assert conn.receive_data(b"\x00\x01y") == []


# -- socket types --------------------------------------------------------------------------------

VALID = {
    ("REQ", "REP"), ("REQ", "ROUTER"), ("DEALER", "REP"), ("DEALER", "DEALER"),
    ("DEALER", "ROUTER"), ("ROUTER", "ROUTER"), ("PUB", "SUB"), ("PUB", "XSUB"),
    ("XPUB", "SUB"), ("XPUB", "XSUB"), ("PUSH", "PULL"), ("PAIR", "PAIR"),
}  # fmt: skip


def test_compatible_matches_the_rfc_table_both_ways():
    for ours in SOCKET_TYPES:
        for theirs in SOCKET_TYPES:
            expected = (ours, theirs) in VALID or (theirs, ours) in VALID
            assert compatible(ours, theirs) is expected, (ours, theirs)
    assert not compatible("PUSH", "pull")
    assert not compatible("CLIENT", "SERVER")


def test_mismatch_reason_is_a_valid_error_reason():
    reason = mismatch_reason("PUSH", "PUSH")
    assert "PUSH" in reason
    weird = mismatch_reason("PULL", "a b\u00e9" * 100)
    for text in (reason, weird):
        assert all("!" <= c <= "~" for c in text)
        assert len(text) <= 255
        assert connected().receive_data(ZMTPConnection.encode_error(text)) == [Error(text)]


# -- frames --------------------------------------------------------------------------------------

FRAME_TABLE = [
    ([b""], b"\x00\x00"),
    ([b"hi"], b"\x00\x02hi"),
    ([b"x" * 255], b"\x00\xff" + b"x" * 255),
    ([b"x" * 256], b"\x02" + (256).to_bytes(8, "big") + b"x" * 256),
    ([b"a", b"", b"b"], b"\x01\x01a\x01\x00\x00\x01b"),
    (
        [b"y" * 256, b"z" * 255],
        b"\x03" + (256).to_bytes(8, "big") + b"y" * 256 + b"\x00\xff" + b"z" * 255,
    ),
]


@pytest.mark.parametrize("frames, wire", FRAME_TABLE)
def test_encode_message_bytes(frames, wire):
    assert encode_message(frames) == wire
    assert ZMTPConnection("PUSH").encode_message(frames) == wire


@pytest.mark.parametrize("frames, wire", FRAME_TABLE)
def test_decode_message_bytes(frames, wire):
    conn = connected()
    assert conn.receive_data(wire) == [Message(frames)]
    assert feed_bytewise(connected(), wire) == [Message(frames)]


def test_encode_message_accepts_bytes_like_frames_and_refuses_none():
    assert encode_message([bytearray(b"ab"), memoryview(b"cd")]) == b"\x01\x02ab\x00\x02cd"
    with pytest.raises(ValueError):
        encode_message([])


def test_long_size_is_accepted_for_small_frames():
    conn = connected()
    assert conn.receive_data(b"\x02" + (3).to_bytes(8, "big") + b"abc") == [Message([b"abc"])]


def test_more_frames_are_assembled_across_chunks():
    conn = connected()
    assert conn.receive_data(b"\x01\x01a\x01\x00") == []
    assert conn.receive_data(b"\x00\x03b") == []
    assert conn.receive_data(b"cd\x00\x01e") == [Message([b"a", b"", b"bcd"]), Message([b"e"])]


def test_commands_between_frames_leave_the_message_alone():
    conn = connected()
    data = b"\x01\x01a" + ZMTPConnection.encode_ping(5) + b"\x00\x01b"
    assert conn.receive_data(data) == [Ping(5, b""), Message([b"a", b"b"])]


@pytest.mark.parametrize(
    "flags, match",
    [(0x08, "reserved"), (0x10, "reserved"), (0x80, "reserved"), (0xFF, "reserved"),
     (0x05, "command with MORE"), (0x07, "command with MORE")],
)  # fmt: skip
def test_bad_flags_fail_on_the_flags_byte(flags, match):
    conn = connected()
    with pytest.raises(ProtocolError, match=f"flags 0x{flags:02x} .*{match}"):
        conn.receive_data(bytes((flags,)))


def test_frame_size_over_2_63_fails():
    conn = connected()
    with pytest.raises(ProtocolError, match="over 2"):
        conn.receive_data(b"\x02" + (2**63).to_bytes(8, "big"))


@pytest.mark.parametrize(
    "header",
    [b"\x02" + (10**9).to_bytes(8, "big"), b"\x00\xc8", b"\x03" + (101).to_bytes(8, "big")],
)
def test_oversized_frame_fails_on_its_header(header):
    conn = connected(maxmsgsize=100)
    with pytest.raises(MessageTooLarge, match="maxmsgsize is 100") as info:
        conn.receive_data(header)
    assert info.value.data == header


def test_oversized_multipart_message_fails_on_the_header_that_overflows():
    conn = connected(maxmsgsize=100)
    assert conn.receive_data(encode_message([b"a" * 100])) == [Message([b"a" * 100])]
    assert conn.receive_data(b"\x01\x3c" + b"b" * 60) == []
    with pytest.raises(MessageTooLarge, match="message of 101 bytes"):
        conn.receive_data(b"\x00\x29")


def test_zero_maxmsgsize_allows_only_empty_frames():
    conn = connected(maxmsgsize=0)
    assert conn.receive_data(b"\x01\x00\x00\x00") == [Message([b"", b""])]
    with pytest.raises(MessageTooLarge):
        conn.receive_data(b"\x00\x01")


def test_maxmsgsize_does_not_limit_commands_but_max_command_size_does():
    conn = connected(maxmsgsize=1)
    topic = b"t" * 300
    long_subscribe = b"\x06" + (310).to_bytes(8, "big") + b"\x09SUBSCRIBE" + topic
    wire = ZMTPConnection.encode_ping(1) + long_subscribe
    assert conn.receive_data(wire) == [Ping(1, b""), Subscribe(topic)]
    with pytest.raises(ProtocolError, match="MAX_COMMAND_SIZE") as info:
        conn.receive_data(b"\x06" + (MAX_COMMAND_SIZE + 1).to_bytes(8, "big"))
    assert not isinstance(info.value, MessageTooLarge)


def test_partial_frame_survives_compaction():
    conn = connected()
    messages = [[b"m%d" % i, b"x" * 200] for i in range(500)]  # over 64 KiB consumed at once
    wire = b"".join(encode_message(m) for m in messages) + encode_message([b"tail" * 100])
    cut = len(wire) - 150
    assert conn.receive_data(wire[:cut]) == [Message(m) for m in messages]
    assert conn.receive_data(wire[cut:]) == [Message([b"tail" * 100])]


def test_large_frame_in_small_chunks():
    conn = connected()
    wire = encode_message([b"head", bytes(range(256)) * 4096, b""])
    events = []
    for i in range(0, len(wire), 1000):
        events += conn.receive_data(wire[i : i + 1000])
    assert events == [Message([b"head", bytes(range(256)) * 4096, b""])]
    assert len(conn._buf) == 0  # nothing consumed is kept


# -- commands ------------------------------------------------------------------------------------


def test_subscribe_and_cancel_in_3_1():
    conn = connected("SUB", peer_minor=1, peer_ready=READY_PUSH.replace(b"\x04PUSH", b"\x04XPUB"))
    assert conn.encode_subscribe(b"abc") == b"\x04\x0d\x09SUBSCRIBEabc"
    assert conn.encode_cancel(b"abc") == b"\x04\x0a\x06CANCELabc"
    assert conn.encode_subscribe(b"") == b"\x04\x0a\x09SUBSCRIBE"
    pub = connected("XPUB", peer_minor=1, peer_ready=READY_PUSH.replace(b"PUSH", b"XSUB"))
    wire = conn.encode_subscribe(b"abc") + conn.encode_cancel(b"abc") + conn.encode_subscribe(b"")
    assert pub.receive_data(wire) == [Subscribe(b"abc"), Cancel(b"abc"), Subscribe(b"")]


@pytest.mark.parametrize("our_minor, peer_minor", [(0, 1), (1, 0), (0, 0)])
def test_subscribe_and_cancel_in_3_0(our_minor, peer_minor):
    conn = connected("SUB", minor=our_minor, peer_minor=peer_minor, peer_ready=READY_PUSH)
    assert conn.encode_subscribe(b"abc") == b"\x00\x04\x01abc"
    assert conn.encode_cancel(b"abc") == b"\x00\x04\x00abc"
    (message,) = connected("PUB").receive_data(conn.encode_subscribe(b"abc"))
    assert [parse_subscription(f) for f in message.frames] == [Subscribe(b"abc")]


def test_parse_subscription():
    assert parse_subscription(b"\x01abc") == Subscribe(b"abc")
    assert parse_subscription(b"\x00abc") == Cancel(b"abc")
    assert parse_subscription(b"\x01") == Subscribe(b"")
    assert parse_subscription(b"\x02abc") is None
    assert parse_subscription(b"") is None
    assert Subscribe(b"x") != Cancel(b"x")


def test_subscription_form_is_unknown_before_the_greeting():
    conn = ZMTPConnection("SUB")
    with pytest.raises(RuntimeError):
        conn.encode_subscribe(b"a")
    with pytest.raises(RuntimeError):
        conn.encode_cancel(b"a")


def test_ping_and_pong():
    assert ZMTPConnection.encode_ping(100, b"ctx") == b"\x04\x0a\x04PING\x00\x64ctx"
    assert ZMTPConnection.encode_ping() == b"\x04\x07\x04PING\x00\x00"
    assert ZMTPConnection.encode_pong(b"ctx") == b"\x04\x08\x04PONGctx"
    conn = connected()
    wire = (
        ZMTPConnection.encode_ping(0xFFFF, b"c" * 16)
        + command(b"PING", b"\x00\x01" + b"d" * 20)
        + ZMTPConnection.encode_pong(b"ctx")
        + ZMTPConnection.encode_pong()
    )
    assert conn.receive_data(wire) == [
        Ping(0xFFFF, b"c" * 16), Ping(1, b"d" * 16), Pong(b"ctx"), Pong(b"")
    ]  # fmt: skip
    for bad in ({"ttl": -1}, {"ttl": 65536}, {"context": b"x" * 17}):
        with pytest.raises(ValueError):
            ZMTPConnection.encode_ping(**bad)
    with pytest.raises(ValueError):
        ZMTPConnection.encode_pong(b"x" * 17)


def test_ping_without_ttl_fails():
    with pytest.raises(ProtocolError, match="2-byte TTL"):
        connected().receive_data(command(b"PING", b"\x00"))


def test_error_command():
    assert ZMTPConnection.encode_error("boom") == b"\x04\x0b\x05ERROR\x04boom"
    assert ZMTPConnection.encode_error(b"") == b"\x04\x07\x05ERROR\x00"
    with pytest.raises(ValueError):
        ZMTPConnection.encode_error("x" * 256)
    conn = connected()
    wire = b"\x01\x01a" + ZMTPConnection.encode_error("boom") + b"\x00\x01b"
    assert conn.receive_data(wire) == [Error("boom")]
    assert conn.state is ConnectionState.CLOSED
    assert conn.receive_data(b"\x00\x01c") == []


@pytest.mark.parametrize("data", [b"", b"\x05abc"])
def test_malformed_error_command_fails(data):
    with pytest.raises(ProtocolError, match="malformed ERROR"):
        connected().receive_data(command(b"ERROR", data))


def test_unknown_commands_are_reported():
    conn = connected()
    wire = command(b"JOIN", b"group") + command(b"ping") + b"\x00\x00"
    assert conn.receive_data(wire) == [
        UnknownCommand("JOIN", b"group"), UnknownCommand("ping", b""), Message([b""])
    ]  # fmt: skip


# -- whole streams -------------------------------------------------------------------------------

STREAM = (
    LIBZMQ_GREETING
    + READY_DEALER
    + encode_message([b"id", b"", b"x" * 300])
    + command(b"SUBSCRIBE", b"t")
    + ZMTPConnection.encode_ping(10, b"p")
    + encode_message([b""])
    + ZMTPConnection.encode_error("bye")
)
STREAM_EVENTS = [
    Greeting(3, 1, "NULL", False),
    Ready("DEALER", b"", {"socket-type": b"DEALER", "identity": b""}),
    Message([b"id", b"", b"x" * 300]),
    Subscribe(b"t"),
    Ping(10, b"p"),
    Message([b""]),
    Error("bye"),
]


def test_whole_stream_in_one_chunk():
    assert ZMTPConnection("ROUTER").receive_data(STREAM) == STREAM_EVENTS


def test_whole_stream_byte_by_byte():
    assert feed_bytewise(ZMTPConnection("ROUTER"), STREAM) == STREAM_EVENTS


def frame_bytes():
    sizes = st.one_of(st.integers(0, 8), st.integers(250, 260), st.integers(0, 600))
    return sizes.flatmap(lambda n: st.binary(min_size=n, max_size=n))


@settings(max_examples=150, deadline=None, database=None)
@given(
    messages=st.lists(st.lists(frame_bytes(), min_size=1, max_size=5), max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    peer_minor=st.sampled_from([0, 1]),
)
def test_round_trip_in_random_chunks(messages, cuts, peer_minor):
    sender = ZMTPConnection("PUSH")
    wire = greeting(minor=peer_minor) + sender.encode_ready()
    wire += b"".join(sender.encode_message(m) for m in messages)
    receiver = ZMTPConnection("PULL", maxmsgsize=5 * 600)
    bounds = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    events = []
    for start, stop in zip(bounds, bounds[1:]):
        events += receiver.receive_data(wire[start:stop])
    assert events[0] == Greeting(3, peer_minor, "NULL", False)
    assert events[1].socket_type == "PUSH"
    assert events[2:] == [Message(m) for m in messages]
    assert receiver.minor == peer_minor


# -- interop with libzmq, through pyzmq ----------------------------------------------------------


@pytest.fixture
def zsocket():
    """Make pyzmq sockets (with 5 s timeouts) that are closed when the test ends."""
    if zmq is None:
        if os.environ.get("DHAGA_REQUIRE_PEERS") == "1":
            pytest.fail("pyzmq is required (DHAGA_REQUIRE_PEERS=1) but cannot be imported")
        pytest.skip("pyzmq is not installed")
    ctx = zmq.Context()
    made = []

    def make(kind):
        sock = ctx.socket(kind)
        sock.linger = 0
        sock.rcvtimeo = sock.sndtimeo = 5000
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close()
    ctx.term()


def read_until(sock, conn, done, events=()):
    """Feed what the socket receives to conn until done(events); EOF or 5 s of silence fail."""
    events = list(events)
    while not done(events):
        data = sock.recv(65536)
        assert data, f"peer closed the connection; events so far: {events}"
        events += conn.receive_data(data)
    return events


def handshake(sock, conn, peer_type):
    sock.sendall(conn.initiate() + conn.encode_ready())
    events = read_until(sock, conn, lambda ev: any(isinstance(e, Ready) for e in ev))
    assert events[0] == Greeting(3, 1, "NULL", False)  # libzmq 4.x announces 3.1
    assert events[1].socket_type == peer_type and compatible(conn.socket_type, peer_type)
    return events[2:]


MESSAGES = [[b"one"], [b"", b"after-empty"], [b"a", b"b" * 300, b""], [b"x" * 255, b"y" * 256]]


def connect_to(zsock):
    port = int(zsock.last_endpoint.rsplit(b":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.peer
@pytest.mark.parametrize("minor", [1, 0])
def test_push_to_libzmq_pull(zsocket, minor):
    pull = zsocket(zmq.PULL)
    pull.bind("tcp://127.0.0.1:0")
    with connect_to(pull) as sock:
        conn = ZMTPConnection("PUSH", minor=minor)
        assert handshake(sock, conn, "PULL") == []
        assert conn.minor == minor
        sock.sendall(b"".join(conn.encode_message(m) for m in MESSAGES))
        assert [pull.recv_multipart() for _ in MESSAGES] == MESSAGES


@pytest.mark.peer
@pytest.mark.parametrize("minor", [1, 0])
def test_dealer_with_libzmq_router(zsocket, minor):
    router = zsocket(zmq.ROUTER)
    router.bind("tcp://127.0.0.1:0")
    with connect_to(router) as sock:
        conn = ZMTPConnection("DEALER", identity=b"dhaga-1", minor=minor)
        assert handshake(sock, conn, "ROUTER") == []
        sock.sendall(b"".join(conn.encode_message(m) for m in MESSAGES))
        assert [router.recv_multipart() for _ in MESSAGES] == [[b"dhaga-1", *m] for m in MESSAGES]
        for m in MESSAGES:
            router.send_multipart([b"dhaga-1", *m])
        events = read_until(sock, conn, lambda ev: len(ev) == len(MESSAGES))
        assert events == [Message(m) for m in MESSAGES]


@pytest.mark.peer
@pytest.mark.parametrize("minor", [1, 0])
def test_libzmq_push_to_us(zsocket, minor):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        push = zsocket(zmq.PUSH)
        push.connect(f"tcp://127.0.0.1:{server.getsockname()[1]}")
        sock, _ = server.accept()
        with sock:
            sock.settimeout(5)
            conn = ZMTPConnection("PULL", minor=minor)
            events = handshake(sock, conn, "PUSH")
            for m in MESSAGES:
                push.send_multipart(m)
            events = read_until(sock, conn, lambda ev: len(ev) == len(MESSAGES), events)
            assert events == [Message(m) for m in MESSAGES]


@pytest.mark.peer
@pytest.mark.parametrize("minor", [1, 0])
def test_sub_with_libzmq_xpub(zsocket, minor):
    xpub = zsocket(zmq.XPUB)
    xpub.bind("tcp://127.0.0.1:0")
    with connect_to(xpub) as sock:
        conn = ZMTPConnection("SUB", minor=minor)
        assert handshake(sock, conn, "XPUB") == []
        sock.sendall(conn.encode_subscribe(b"top"))
        assert xpub.recv() == b"\x01top"  # libzmq parsed our subscription, whatever its form
        xpub.send_multipart([b"top-1", b"body"])
        xpub.send(b"other")  # filtered out by libzmq
        xpub.send(b"top-2")
        events = read_until(sock, conn, lambda ev: len(ev) == 2)
        assert events == [Message([b"top-1", b"body"]), Message([b"top-2"])]
        sock.sendall(conn.encode_cancel(b"top"))
        assert xpub.recv() == b"\x00top"


@pytest.mark.peer
@pytest.mark.parametrize("minor, expected", [(1, Subscribe(b"t")), (0, Message([b"\x01t"]))])
def test_libzmq_sub_subscribes_in_our_version(zsocket, minor, expected):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        sub = zsocket(zmq.SUB)
        sub.connect(f"tcp://127.0.0.1:{server.getsockname()[1]}")
        sub.subscribe(b"t")
        sock, _ = server.accept()
        with sock:
            sock.settimeout(5)
            conn = ZMTPConnection("PUB", minor=minor)
            events = read_until(sock, conn, lambda ev: ev, handshake(sock, conn, "SUB"))
            assert events == [expected]
            sock.sendall(conn.encode_message([b"t-msg"]))
            assert sub.recv() == b"t-msg"
