"""The ZMTP codec's security mechanisms, sans I/O: PLAIN and CURVE command layouts as byte
tables, Z85's RFC 32 vectors, handshakes between two codecs, sealed traffic round trips
(hypothesis), and the refusals: wrong keys, bad credentials, tampering, replays."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhaga.codecs import z85
from dhaga.codecs.zmtp import (
    AuthenticationFailed,
    CurveClient,
    CurveServer,
    Error,
    Message,
    Ping,
    PlainClient,
    PlainServer,
    Ready,
    Subscribe,
    ZMTPConnection,
    keypair,
)
from dhaga.errors import MessageTooLarge, ProtocolError

nacl = pytest.importorskip("nacl.bindings")  # the curve extra; in the test extra too

C_PUB, C_SEC = keypair()
S_PUB, S_SEC = keypair()


# -- Z85 (RFC 32) --------------------------------------------------------------------------------


def test_z85_rfc32_vectors():
    raw = bytes([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B])
    assert z85.encode(raw) == "HelloWorld"
    assert z85.decode("HelloWorld") == raw
    # RFC 32's test certificate keys (the "Ironhouse" example pair)
    public = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    secret = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
    assert z85.encode(z85.decode(public)) == public
    assert len(z85.decode(public)) == len(z85.decode(secret)) == 32
    assert nacl.crypto_scalarmult_base(z85.decode(secret)) == z85.decode(public)


@given(st.binary(max_size=64).map(lambda b: b[: len(b) // 4 * 4]))
def test_z85_round_trip(data):
    text = z85.encode(data)
    assert len(text) == len(data) // 4 * 5
    assert z85.decode(text) == data


@pytest.mark.parametrize("bad, message", [("abcd", "multiple of 5"), ("abc\"d", "not a Z85 character"),
                                          ("abcd~", "not a Z85 character"),
                                          ("#####", "over 2\\^32")])
def test_z85_bad_text(bad, message):
    with pytest.raises(ValueError, match=message):
        z85.decode(bad)


def test_z85_bad_length():
    with pytest.raises(ValueError, match="multiple of 4"):
        z85.encode(b"abc")


# -- handshakes between two codecs ---------------------------------------------------------------


def handshake(client_mech, server_mech, client_type="DEALER", server_type="ROUTER"):
    c = ZMTPConnection(client_type, identity=b"cid", mechanism=client_mech)
    s = ZMTPConnection(server_type, mechanism=server_mech)
    to_s, to_c = c.initiate() + c.encode_ready(), s.initiate() + s.encode_ready()
    ce, se = [], []
    wire = []  # every command after the greetings, in order
    for _ in range(4):
        if to_s:
            se += s.receive_data(to_s)
            wire.append(("c", to_s))
        to_c += s.data_to_send()
        to_s = b""
        if to_c:
            ce += c.receive_data(to_c)
            wire.append(("s", to_c))
        to_s += c.data_to_send()
        to_c = b""
    return c, s, ce, se, wire


def test_plain_commands_byte_table():
    c, s, ce, se, wire = handshake(PlainClient(b"admin", b"secret"), PlainServer())
    assert c.initiate()[12:32] == b"PLAIN".ljust(20, b"\0")
    assert c.initiate()[32] == 0 and s.initiate()[32] == 1  # as-server
    assert wire[0][1][64:] == b"\x04\x13\x05HELLO\x05admin\x06secret"
    assert wire[1][1][64:] == b"\x04\x08\x07WELCOME"
    metadata_c = b"\x0bSocket-Type\x00\x00\x00\x06DEALER\x08Identity\x00\x00\x00\x03cid"
    assert wire[2][1] == b"\x04" + bytes((9 + len(metadata_c),)) + b"\x08INITIATE" + metadata_c
    assert wire[3][1] == (b"\x04\x29\x05READY\x0bSocket-Type\x00\x00\x00\x06ROUTER"
                          b"\x08Identity\x00\x00\x00\x00")
    assert [type(e) for e in ce] == [type(ce[0]), Ready] and ce[1].socket_type == "ROUTER"
    assert se[1] == Ready("DEALER", b"cid", {"socket-type": b"DEALER", "identity": b"cid"})
    assert c.handshake_complete and s.handshake_complete


def test_curve_commands_layout():
    c, s, ce, se, wire = handshake(CurveClient(C_PUB, C_SEC, S_PUB), CurveServer(S_PUB, S_SEC))
    hello = wire[0][1][64:]
    assert hello[:8] == b"\x04\xc8\x05HELLO\x01\x00"[:8] and len(hello) == 2 + 200
    body = hello[2:]
    assert body[:6] == b"\x05HELLO" and body[6:8] == b"\x01\x00" and body[8:80] == bytes(72)
    assert body[112:120] == struct.pack(">Q", 1)  # the client's first short nonce
    # HELLO's signature box opens with the server's secret key: 64 zero bytes
    assert nacl.crypto_box_open(body[120:200], b"CurveZMQHELLO---" + body[112:120],
                                body[80:112], S_SEC) == bytes(64)
    welcome = wire[1][1][64:]
    assert welcome[:2] == b"\x04\xa8" and welcome[2:10] == b"\x07WELCOME" and len(welcome) == 170
    initiate = wire[2][1]
    assert initiate[0] == 0x06 and initiate[9:18] == b"\x08INITIATE"  # long: metadata makes it big
    assert initiate[9 + 9 + 96 : 9 + 9 + 104] == struct.pack(">Q", 2)
    ready = wire[3][1]
    assert ready[2:8] == b"\x05READY" and ready[8:16] == struct.pack(">Q", 1)
    assert se[-1].socket_type == "DEALER" and se[-1].identity == b"cid"
    assert ce[-1].socket_type == "ROUTER"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.binary(max_size=600), min_size=1, max_size=4), min_size=1,
                max_size=5), st.integers(1, 97))
def test_curve_traffic_round_trip(messages, chunk):
    c, s, *_ = handshake(CurveClient(C_PUB, C_SEC, S_PUB), CurveServer(S_PUB, S_SEC))
    wire = b"".join(c.encode_message(m) for m in messages) + c.encode_ping(3, b"x")
    wire += c.encode_subscribe(b"topic")
    events = []
    for i in range(0, len(wire), chunk):
        events += s.receive_data(wire[i : i + chunk])
    assert events == [Message(m) for m in messages] + [Ping(3, b"x"), Subscribe(b"topic")]
    back = s.encode_message(messages[0]) + s.encode_pong(b"x")
    assert c.receive_data(back)[0] == Message(messages[0])


def test_sealed_frames_are_not_plain_frames():
    c, s, *_ = handshake(CurveClient(C_PUB, C_SEC, S_PUB), CurveServer(S_PUB, S_SEC))
    sealed = bytes(c.encode_message([b"secret payload"]))
    assert b"secret payload" not in sealed and sealed[:2] == bytes((0, len(sealed) - 2))
    assert sealed[2:10] == b"\x07MESSAGE" and sealed[10:18] == struct.pack(">Q", 3)
    plain = nacl.crypto_box_open_easy_afternm(
        sealed[18:], b"CurveZMQMESSAGEC" + sealed[10:18],
        nacl.crypto_box_beforenm(s._mech._client_transient, s._mech._cn_secret))
    assert plain == b"\x00secret payload"  # flags byte, then the frame


# -- refusals ------------------------------------------------------------------------------------


def test_curve_wrong_server_key():
    other_pub, _ = keypair()
    c = ZMTPConnection("PUSH", mechanism=CurveClient(C_PUB, C_SEC, other_pub))
    s = ZMTPConnection("PULL", mechanism=CurveServer(S_PUB, S_SEC))
    with pytest.raises(ProtocolError, match="HELLO does not verify"):
        s.receive_data(c.initiate() + c.encode_ready())
    assert s.data_to_send() == b""  # nothing is answered to a client that cannot prove it


def test_curve_unknown_client_key_gets_error():
    seen = []

    def authenticate(mechanism, credentials):
        seen.append((mechanism, credentials))
        return "400", "unknown key"

    with pytest.raises(AuthenticationFailed, match="400 unknown key") as info:
        handshake(CurveClient(C_PUB, C_SEC, S_PUB), CurveServer(S_PUB, S_SEC, authenticate))
    assert seen == [("CURVE", [C_PUB])]
    assert info.value.reply == b"\x04\x0a\x05ERROR\x03400"


def test_plain_wrong_password_gets_error_and_client_sees_it():
    server = PlainServer(lambda m, cr: ("200", "") if cr == [b"u", b"pw"] else ("400", "no"))
    c = ZMTPConnection("PUSH", mechanism=PlainClient(b"u", b"guess"))
    s = ZMTPConnection("PULL", mechanism=server)
    c.receive_data(s.initiate())
    with pytest.raises(AuthenticationFailed):
        s.receive_data(c.initiate() + c.encode_ready())
    assert c.receive_data(s.data_to_send()) == [Error("400")]


@pytest.mark.parametrize("hello", [b"", b"\x05ab", b"\x01a\x05ab", b"\x01a\x01bc"])
def test_plain_malformed_hello(hello):
    s = ZMTPConnection("PULL", mechanism=PlainServer())
    c = ZMTPConnection("PUSH")
    command = b"\x04" + bytes((6 + len(hello),)) + b"\x05HELLO" + hello
    with pytest.raises(ProtocolError, match="malformed PLAIN HELLO"):
        s.receive_data(c.initiate()[:12] + b"PLAIN".ljust(20, b"\0") + bytes(32) + command)


def connected_curve():
    c, s, *_ = handshake(CurveClient(C_PUB, C_SEC, S_PUB), CurveServer(S_PUB, S_SEC))
    return c, s


def test_tampered_frame():
    c, s = connected_curve()
    good = c.encode_message([b"one"])
    bad = bytearray(c.encode_message([b"two"]))
    bad[20] ^= 0x40
    with pytest.raises(ProtocolError, match="does not verify") as info:
        s.receive_data(good + bytes(bad))
    assert info.value.events == [Message([b"one"])]  # what came before is not lost


def test_replayed_and_reordered_frames():
    c, s = connected_curve()
    first, second = c.encode_message([b"1"]), c.encode_message([b"2"])
    s.receive_data(second)
    with pytest.raises(ProtocolError, match="replayed or reordered"):
        s.receive_data(first)
    c, s = connected_curve()
    first = c.encode_message([b"1"])
    s.receive_data(first)
    with pytest.raises(ProtocolError, match="nonce 3 is not above the last one, 3"):
        s.receive_data(first)


def test_plain_frame_on_a_curve_connection():
    c, s = connected_curve()
    with pytest.raises(ProtocolError, match="only MESSAGE"):
        s.receive_data(b"\x00\x0bhello world" + bytes(22))
    c, s = connected_curve()
    with pytest.raises(ProtocolError, match="flags 0x01"):
        s.receive_data(b"\x01\x01a")


def test_sealed_maxmsgsize():
    c = ZMTPConnection("PUSH", mechanism=CurveClient(C_PUB, C_SEC, S_PUB))
    s = ZMTPConnection("PULL", mechanism=CurveServer(S_PUB, S_SEC), maxmsgsize=1000)
    s.receive_data(c.initiate() + c.encode_ready())
    c.receive_data(s.initiate() + s.data_to_send())
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    assert s.receive_data(c.encode_message([b"x" * 1000])) == [Message([b"x" * 1000])]
    with pytest.raises(MessageTooLarge):
        s.receive_data(c.encode_message([b"x" * 5000])[:9])  # refused from its header alone


def test_mechanism_mismatch():
    s = ZMTPConnection("PULL", mechanism=CurveServer(S_PUB, S_SEC))
    with pytest.raises(ProtocolError, match="peer requires the 'NULL' mechanism; this socket uses"):
        s.receive_data(ZMTPConnection("PUSH").initiate())


def test_bad_keys():
    with pytest.raises(ValueError, match="32 raw bytes"):
        CurveClient(C_PUB, C_SEC, b"short")


def test_without_in_place_sealing(monkeypatch):
    """PyNaCl's public functions alone (if its private libsodium handle ever moves)."""
    from dhaga.codecs import _zmtp_sealing

    monkeypatch.setattr(_zmtp_sealing, "_lib", None)
    c, s = connected_curve()
    wire = c.encode_message([b"a" * 300]) + c.encode_message([b"x", b""]) + c.encode_ping(1)
    assert s.receive_data(wire) == [Message([b"a" * 300]), Message([b"x", b""]), Ping(1, b"")]
    with pytest.raises(ProtocolError, match="replayed"):
        s.receive_data(c.encode_message([b"z"])[:0] + wire[:10] + wire[10:])


def test_sealed_traffic_in_the_same_chunk_as_ready():
    """The server's READY and its first sealed frames often arrive in one read."""
    c = ZMTPConnection("SUB", mechanism=CurveClient(C_PUB, C_SEC, S_PUB))
    s = ZMTPConnection("PUB", mechanism=CurveServer(S_PUB, S_SEC))
    s.receive_data(c.initiate() + c.encode_ready())
    c.receive_data(s.initiate() + s.data_to_send())
    s.receive_data(c.data_to_send())
    chunk = s.data_to_send() + s.encode_subscribe(b"") + s.encode_message([b"a", b"b"])
    events = c.receive_data(chunk)
    assert [type(e) for e in events] == [Ready, Subscribe, Message]
    assert events[2] == Message([b"a", b"b"])
