"""dhaga.mq against libzmq (through pyzmq): every valid pair of socket types, dhaga binding and
libzmq binding, dhaga announcing ZMTP 3.1 and 3.0; identities, heartbeats, a frozen peer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import need_peer
from mq_helpers import until

import dhaga
from dhaga import mq
from dhaga.testing import settle

try:
    import zmq
except ImportError:  # pragma: no cover - depends on the environment
    zmq = None

pytestmark = pytest.mark.peer
TCP = "tcp://127.0.0.1:*"
MESSAGES = [
    [b"one"],
    [b"", b"after-empty"],
    [b"a", b"", b"c", b""],
    [bytes(range(256))],
    [b"x" * (1 << 20)],  # 1 MiB
]


@pytest.fixture
def zctx():
    need_peer(zmq is not None, "pyzmq")
    ctx = zmq.Context()
    yield ctx
    ctx.term()


class Z:
    """A libzmq socket driven from a worker thread, so the dhaga side keeps running."""

    def __init__(self, sock):
        self.s = sock

    def send(self, frames):
        dhaga.to_thread(self.s.send_multipart, frames)

    def recv(self):
        return dhaga.to_thread(self.s.recv_multipart)

    def subscribe(self, topic):
        if self.s.type == zmq.XSUB:
            self.send([b"\x01" + topic])
        else:
            self.s.subscribe(topic)


class D:
    """A dhaga socket with the same small interface."""

    def __init__(self, sock):
        self.s = sock

    def send(self, frames):
        self.s.send_multipart(frames, timeout=5)

    def recv(self):
        return self.s.recv_multipart(timeout=5)

    def subscribe(self, topic):
        self.s.subscribe(topic)


@pytest.fixture
def link(zctx):
    """Make a connected (dhaga socket, libzmq socket) pair; closes both at the end."""
    made = []

    def _link(d_kind, z_kind, dhaga_binds, minor, d_opts=None, z_opts=None):
        d = mq.Socket(d_kind, zmtp_minor=minor, linger=0, **(d_opts or {}))
        z = zctx.socket(getattr(zmq, z_kind))
        made.append((d, z))
        z.linger = 0
        z.rcvtimeo = z.sndtimeo = 5000
        for name, value in (z_opts or {}).items():
            z.setsockopt(getattr(zmq, name), value)
        if dhaga_binds:
            z.connect(d.bind(TCP))
        else:
            port = z.bind_to_random_port("tcp://127.0.0.1")
            d.connect(f"tcp://127.0.0.1:{port}")
        return d, z

    yield _link
    for d, z in made:
        d.close(linger=0)
        z.close(0)
    settle()  # let the closed sockets' dhagas finish


# -- the scenarios -----------------------------------------------------------------------------


def one_way(src, dst):
    for m in MESSAGES:
        src.send(m)
    assert [dst.recv() for _ in MESSAGES] == MESSAGES


def both_ways(a, b):
    one_way(a, b)
    one_way(b, a)


def dealer_router(dealer, router):
    for m in MESSAGES:
        dealer.send(m)
        assert router.recv() == [b"dealer-id", *m]
        router.send([b"dealer-id", *m])
        assert dealer.recv() == m


def req_rep(req, rep):
    for m in MESSAGES:
        req.send(m)
        assert rep.recv() == m
        rep.send(m[::-1])
        assert req.recv() == m[::-1]


def req_router(req, router):
    for m in MESSAGES:
        req.send(m)
        assert router.recv() == [b"req-id", b"", *m]
        router.send([b"req-id", b"", *m])
        assert req.recv() == m


def dealer_rep(dealer, rep):
    for m in MESSAGES:
        dealer.send([b"", *m])
        assert rep.recv() == m
        rep.send(m)
        assert dealer.recv() == [b"", *m]


def router_router(connecter, binder):
    # The connecting ROUTER may address the bound one only once the handshake told it the id.
    def first_send():
        try:
            connecter.send([b"bound-side", b"hello"])
            return True
        except (mq.HostUnreachable, zmq.ZMQError):
            return False

    until(first_send)
    assert binder.recv() == [b"connect-side", b"hello"]
    for m in MESSAGES:
        binder.send([b"connect-side", *m])
        assert connecter.recv() == [b"bound-side", *m]


def pub_sub(pub, sub, pub_kind):
    sub.subscribe(b"t")
    if pub_kind == "XPUB":
        got = []
        # libzmq sends its subscriptions to a new peer only when its socket is next used
        until(lambda: _poke(sub) or _poll_one(pub, got))
        assert got == [[b"\x01t"]]  # the subscription, in either ZMTP version
    else:  # a PUB cannot tell: probe until the subscription has arrived
        def probed():
            pub.send([b"t-probe"])
            return True

        got = []
        until(lambda: probed() and _poll_one(sub, got))
    for m in MESSAGES:
        pub.send([b"u-not-subscribed", *m])
        pub.send([b"t", *m])
    pub.send([b"t-end"])
    received = []
    while True:
        msg = sub.recv()
        if msg == [b"t-end"]:
            break
        if msg != [b"t-probe"]:
            received.append(msg)
    assert received == [[b"t", *m] for m in MESSAGES]


def _poke(sock):
    """Let a libzmq socket process its pending commands (a new peer, say); False."""
    if isinstance(sock, Z):
        sock.s.getsockopt(zmq.EVENTS)
    return False


def _poll_one(sub, got):
    """Receive without blocking for long; True once something arrived."""
    if isinstance(sub, D):
        try:
            got.append(sub.s.recv_multipart(timeout=0.02))
        except dhaga.Timeout:
            return False
        return True
    if dhaga.to_thread(sub.s.poll, 20):
        got.append(sub.recv())
        return True
    return False


# Every valid pair (RFC 28-31), as (dhaga's type, libzmq's type), and how to exercise it.
MATRIX = {
    ("PUSH", "PULL"): lambda d, z: one_way(d, z),
    ("PULL", "PUSH"): lambda d, z: one_way(z, d),
    ("PAIR", "PAIR"): both_ways,
    ("DEALER", "DEALER"): both_ways,
    ("DEALER", "ROUTER"): lambda d, z: dealer_router(d, z),
    ("ROUTER", "DEALER"): lambda d, z: dealer_router(z, d),
    ("REQ", "REP"): lambda d, z: req_rep(d, z),
    ("REP", "REQ"): lambda d, z: req_rep(z, d),
    ("REQ", "ROUTER"): lambda d, z: req_router(d, z),
    ("ROUTER", "REQ"): lambda d, z: req_router(z, d),
    ("DEALER", "REP"): lambda d, z: dealer_rep(d, z),
    ("REP", "DEALER"): lambda d, z: dealer_rep(z, d),
    ("PUB", "SUB"): lambda d, z: pub_sub(d, z, "PUB"),
    ("SUB", "PUB"): lambda d, z: pub_sub(z, d, "PUB"),
    ("PUB", "XSUB"): lambda d, z: pub_sub(d, z, "PUB"),
    ("XSUB", "PUB"): lambda d, z: pub_sub(z, d, "PUB"),
    ("XPUB", "SUB"): lambda d, z: pub_sub(d, z, "XPUB"),
    ("SUB", "XPUB"): lambda d, z: pub_sub(z, d, "XPUB"),
    ("XPUB", "XSUB"): lambda d, z: pub_sub(d, z, "XPUB"),
    ("XSUB", "XPUB"): lambda d, z: pub_sub(z, d, "XPUB"),
}
IDS = {"DEALER": b"dealer-id", "REQ": b"req-id"}


@pytest.mark.parametrize("minor", [1, 0], ids=["zmtp3.1", "zmtp3.0"])
@pytest.mark.parametrize("dhaga_binds", [True, False], ids=["dhaga-binds", "libzmq-binds"])
@pytest.mark.parametrize("kinds", list(MATRIX), ids=["-".join(k) for k in MATRIX])
def test_matrix(link, kinds, dhaga_binds, minor):
    d_kind, z_kind = kinds
    d_opts, z_opts = {}, {}
    if "ROUTER" in kinds:
        if d_kind in IDS:
            d_opts["routing_id"] = IDS[d_kind]
        if z_kind in IDS:
            z_opts["ROUTING_ID"] = IDS[z_kind]
    d, z = link(d_kind, z_kind, dhaga_binds, minor, d_opts, z_opts)
    MATRIX[kinds](D(d), Z(z))


@pytest.mark.parametrize("minor", [1, 0], ids=["zmtp3.1", "zmtp3.0"])
@pytest.mark.parametrize("dhaga_binds", [True, False], ids=["dhaga-binds", "libzmq-binds"])
def test_router_router(link, dhaga_binds, minor):
    d_id, z_id = (b"bound-side", b"connect-side") if dhaga_binds else (b"connect-side",
                                                                       b"bound-side")
    d, z = link("ROUTER", "ROUTER", dhaga_binds, minor, {"routing_id": d_id, "router_mandatory": 1},
                {"ROUTING_ID": z_id, "ROUTER_MANDATORY": 1})
    if dhaga_binds:
        router_router(Z(z), D(d))
    else:
        router_router(D(d), Z(z))


@pytest.mark.parametrize("dhaga_binds", [True, False], ids=["dhaga-binds", "libzmq-binds"])
def test_generated_identities_both_ways(link, dhaga_binds):
    router, z_dealer = link("ROUTER", "DEALER", dhaga_binds, 1)
    Z(z_dealer).send([b"anonymous"])
    ident, body = router.recv_multipart(timeout=5)
    assert body == b"anonymous" and len(ident) == 5 and ident[0] == 0
    router.send_multipart([ident, b"routed back"])
    assert Z(z_dealer).recv() == [b"routed back"]
    dealer, z_router = link("DEALER", "ROUTER", not dhaga_binds, 1)
    dealer.send(b"anonymous too")
    ident, body = Z(z_router).recv()
    assert body == b"anonymous too" and len(ident) == 5 and ident[0] == 0  # libzmq's own
    Z(z_router).send([ident, b"back to dhaga"])
    assert dealer.recv(timeout=5) == b"back to dhaga"


# -- heartbeats --------------------------------------------------------------------------------


@pytest.mark.parametrize("minor", [1, 0], ids=["zmtp3.1", "zmtp3.0"])
@pytest.mark.parametrize("dhaga_binds", [True, False], ids=["dhaga-binds", "libzmq-binds"])
def test_libzmq_answers_our_heartbeats(link, dhaga_binds, minor, dhaga_log):
    d, z = link("PUSH", "PULL", dhaga_binds, minor,
                {"heartbeat_ivl": 10, "heartbeat_timeout": 1000, "heartbeat_ttl": 2000})
    d.send(b"up")
    assert Z(z).recv() == [b"up"]
    session = next(iter(d._sessions))
    until(lambda: session.pongs >= 5)  # libzmq answered five PINGs
    assert session in d._sessions and "heartbeat" not in dhaga_log.text
    d.send(b"still up")
    assert Z(z).recv() == [b"still up"]


@pytest.mark.parametrize("minor", [1, 0], ids=["zmtp3.1", "zmtp3.0"])
@pytest.mark.parametrize("dhaga_binds", [True, False], ids=["dhaga-binds", "libzmq-binds"])
def test_we_answer_libzmq_heartbeats(link, dhaga_binds, minor):
    d, z = link("PULL", "PUSH", dhaga_binds, minor, z_opts={
        "HEARTBEAT_IVL": 10, "HEARTBEAT_TIMEOUT": 100, "HEARTBEAT_TTL": 3000})
    monitor = z.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        Z(z).send([b"up"])
        assert d.recv(timeout=5) == b"up"
        session = next(iter(d._sessions))
        until(lambda: session._peer_ttl == 3.0)  # libzmq's PINGs carry its TTL; we honour it
        until(lambda: session.pings >= 20)  # 20 PINGs 10 ms apart, each timing out in 100 ms
        events = []
        while dhaga.to_thread(monitor.poll, 0):
            events.append(monitor.recv_multipart())
        disconnects = [e for e in events if int.from_bytes(e[0][:2], "little")
                       == zmq.EVENT_DISCONNECTED]
        assert not disconnects
        Z(z).send([b"still up"])
        assert d.recv(timeout=5) == b"still up"
    finally:
        z.disable_monitor()
        monitor.close(0)


FROZEN_PEER = """
import sys, time, zmq
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL)
port = pull.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
time.sleep(60)
"""


def test_a_frozen_libzmq_peer_is_detected_by_heartbeats(zctx, dhaga_log):
    proc = subprocess.Popen([sys.executable, "-c", FROZEN_PEER], stdout=subprocess.PIPE)
    push = mq.Socket(mq.PUSH, heartbeat_ivl=20, heartbeat_timeout=200, linger=0)
    try:
        port = int(dhaga.to_thread(proc.stdout.readline))
        push.connect(f"tcp://127.0.0.1:{port}")
        until(lambda: push._sessions and next(iter(push._sessions)).pongs >= 1, timeout=10)
        os.kill(proc.pid, signal.SIGSTOP)  # the kernel still holds the connection; libzmq is mute
        until(lambda: "heartbeat_timeout" in dhaga_log.text)
    finally:
        push.close(linger=0)
        settle()
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=10)
        proc.stdout.close()
