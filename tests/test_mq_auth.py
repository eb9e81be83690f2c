"""dhaga.mq.Authenticator between dhaga sockets: allow and deny lists, PLAIN passwords and CURVE
keys per domain, NULL with a zap_domain; refused peers deliver nothing, others go on."""

from __future__ import annotations

import pytest
from mq_helpers import make, until  # noqa: F401 - fixture

import dhaga
from dhaga import mq

pytest.importorskip("nacl")
TCP = "tcp://127.0.0.1:*"
S_PUB, S_SEC = mq.curve_keypair()
C_PUB, C_SEC = mq.curve_keypair()


@pytest.fixture
def auth():
    a = mq.Authenticator()
    with a:
        yield a


def delivers(make, server_opts, client_opts, timeout=0.3):
    """Whether a message sent by a client with these options reaches the server."""
    pull = make(mq.PULL, **server_opts)
    endpoint = pull.bind(TCP)
    push = make(mq.PUSH, linger=0, **client_opts)
    push.connect(endpoint)
    push.send(b"hi")
    try:
        return pull.recv(timeout=timeout) == b"hi"
    except dhaga.Timeout:
        return False


CURVE_SERVER = {"curve_server": True, "curve_publickey": S_PUB, "curve_secretkey": S_SEC}
CURVE_CLIENT = {"curve_serverkey": S_PUB, "curve_publickey": C_PUB, "curve_secretkey": C_SEC}


def test_curve_without_authenticator_accepts_any_key(make):
    other_pub, other_sec = mq.curve_keypair()
    assert delivers(make, CURVE_SERVER, {**CURVE_CLIENT, "curve_publickey": other_pub,
                                         "curve_secretkey": other_sec}, timeout=5)


def test_plain_without_authenticator_refuses(make, dhaga_log):
    assert not delivers(make, {"plain_server": True},
                        {"plain_username": "u", "plain_password": "p"})
    assert "PLAIN needs a running dhaga.mq.Authenticator" in dhaga_log.text


def test_curve_keys_and_domains(make, auth):
    auth.configure_curve(keys={C_PUB})
    assert delivers(make, CURVE_SERVER, CURVE_CLIENT, timeout=5)
    other_pub, other_sec = mq.curve_keypair()
    stranger = {**CURVE_CLIENT, "curve_publickey": other_pub, "curve_secretkey": other_sec}
    assert not delivers(make, CURVE_SERVER, stranger)
    auth.configure_curve(domain="open", keys=mq.CURVE_ALLOW_ANY)
    assert delivers(make, {**CURVE_SERVER, "zap_domain": "open"}, stranger, timeout=5)


def test_plain_passwords_per_domain(make, auth):
    auth.configure_plain(passwords={"alice": "wonder"})
    auth.configure_plain(domain="ops", passwords={"bob": "builder"})
    alice = {"plain_username": "alice", "plain_password": "wonder"}
    bob = {"plain_username": "bob", "plain_password": "builder"}
    assert delivers(make, {"plain_server": True}, alice, timeout=5)
    assert not delivers(make, {"plain_server": True}, bob)
    assert delivers(make, {"plain_server": True, "zap_domain": "ops"}, bob, timeout=5)
    assert not delivers(make, {"plain_server": True, "zap_domain": "ops"}, alice)
    assert not delivers(make, {"plain_server": True},
                        {"plain_username": "alice", "plain_password": "Wonder"})


def test_addresses(make, auth):
    auth.configure_curve(keys=mq.CURVE_ALLOW_ANY)
    auth.deny("127.0.0.1")
    assert not delivers(make, CURVE_SERVER, CURVE_CLIENT)
    auth.allow("127.0.0.1")  # an allow list overrides the deny list
    assert delivers(make, CURVE_SERVER, CURVE_CLIENT, timeout=5)
    auth.allow("10.0.0.1")
    other = mq.Authenticator()
    other.allow("10.0.0.1")
    auth.stop()
    with other:
        other.configure_curve(keys=mq.CURVE_ALLOW_ANY)
        assert not delivers(make, CURVE_SERVER, CURVE_CLIENT)


def test_null_with_zap_domain(make, auth):
    auth.deny("127.0.0.1")
    assert delivers(make, {}, {}, timeout=5)  # no zap_domain: ZAP is not asked for NULL
    assert not delivers(make, {"zap_domain": "global"}, {})


def test_refused_peer_delivers_nothing_and_good_peer_goes_on(make, auth, dhaga_log):
    auth.configure_plain(passwords={"alice": "wonder"})
    pull = make(mq.PULL, plain_server=True)
    endpoint = pull.bind(TCP)
    bad = make(mq.PUSH, linger=0, plain_username="alice", plain_password="guess")
    bad.connect(endpoint)
    for _ in range(3):
        bad.send(b"bad")
    until(lambda: "PLAIN authentication failed: 400" in dhaga_log.text)
    until(lambda: "refused us; not reconnecting" in dhaga_log.text)
    good = make(mq.PUSH, plain_username="alice", plain_password="wonder")
    good.connect(endpoint)
    good.send(b"good")
    assert pull.recv(timeout=5) == b"good"
    with pytest.raises(dhaga.Timeout):
        pull.recv(timeout=0.2)


def test_zap_reply_format():
    a = mq.Authenticator()
    a.configure_plain(passwords={"u": "p"})
    assert a.handle([b"1.0", b"7", b"", b"127.0.0.1", b"", b"PLAIN", b"u", b"p"]) == [
        b"1.0", b"7", b"200", b"OK", b"u", b""]
    assert a.handle([b"1.0", b"8", b"", b"127.0.0.1", b"", b"PLAIN", b"u", b"x"])[2] == b"400"
    assert a.handle([b"2.0", b"9"])[2] == b"500"


def test_options_and_errors(make):
    sock = make(mq.REQ, curve_serverkey=S_PUB)
    assert len(sock.curve_serverkey) == 32 and mq.z85_encode(sock.curve_serverkey) == S_PUB
    with pytest.raises(ValueError, match="needs curve_publickey and curve_secretkey"):
        sock.connect("tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="40 characters of Z85 or 32 raw bytes"):
        mq.Socket(mq.REQ, curve_serverkey="short")
    with pytest.raises(ValueError, match="at most 255 bytes"):
        mq.Socket(mq.REQ, plain_password="x" * 256)
    a, b = mq.Authenticator(), mq.Authenticator()
    with a, pytest.raises(RuntimeError, match="another"):
        b.start()
