"""dhaga.mq security against libzmq (through pyzmq, with its bundled libsodium): CURVE and PLAIN,
dhaga as client and as server, four patterns; wrong keys, a wrong password, a NULL peer, and
tampered or replayed sealed frames are refused while good peers go on being served."""

from __future__ import annotations

import pytest
from conftest import need_peer
from mq_helpers import until

import dhaga
from dhaga import mq, net
from dhaga.codecs import z85
from dhaga.codecs.zmtp import CurveClient, Ready, ZMTPConnection
from dhaga.testing import settle

try:
    import zmq
    from zmq.auth.thread import ThreadAuthenticator
except ImportError:  # pragma: no cover - depends on the environment
    zmq = None

pytestmark = pytest.mark.peer
TCP = "tcp://127.0.0.1:*"
MESSAGES = [[b"one"], [b"", b"after-empty"], [b"a", b"", b"c"], [bytes(range(256)) * 400]]
SERVER_PUBLIC, SERVER_SECRET = mq.curve_keypair()
CLIENT_PUBLIC, CLIENT_SECRET = mq.curve_keypair()
OTHER_PUBLIC, OTHER_SECRET = mq.curve_keypair()


@pytest.fixture
def zctx():
    need_peer(zmq is not None and zmq.has("curve"), "pyzmq with CURVE")
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)  # closes what a failed test left open, instead of waiting on it


@pytest.fixture
def zauth(zctx):
    """libzmq's ZAP handler (pyzmq's ThreadAuthenticator): PLAIN needs one."""
    auth = ThreadAuthenticator(zctx)
    auth.start()
    auth.configure_plain(domain="*", passwords={"admin": "secret"})
    auth.configure_curve_callback(domain="*", credentials_provider=_KnownKeys())
    yield auth
    auth.stop()


class _KnownKeys:
    def callback(self, domain, key):
        return key == CLIENT_PUBLIC.encode()


@pytest.fixture
def dauth():
    """dhaga's Authenticator with the same rules."""
    auth = mq.Authenticator()
    auth.configure_plain(passwords={"admin": "secret"})
    auth.configure_curve(keys={CLIENT_PUBLIC})
    with auth:
        yield auth


def options(mechanism, server, client_keys=(CLIENT_PUBLIC, CLIENT_SECRET),
            server_key=SERVER_PUBLIC, password="secret"):
    """Socket options, as keyword arguments (dhaga) or setsockopt names (libzmq)."""
    if mechanism == "CURVE" and server:
        return {"curve_server": True, "curve_publickey": SERVER_PUBLIC,
                "curve_secretkey": SERVER_SECRET}
    if mechanism == "CURVE":
        return {"curve_serverkey": server_key, "curve_publickey": client_keys[0],
                "curve_secretkey": client_keys[1]}
    if server:
        return {"plain_server": True}
    return {"plain_username": "admin", "plain_password": password}


class Z:
    """A libzmq socket driven from a worker thread, so the dhaga side keeps running."""

    def __init__(self, ctx, kind, opts):
        self.s = ctx.socket(getattr(zmq, kind))
        self.s.linger = 0
        self.s.rcvtimeo = self.s.sndtimeo = 5000
        for name, value in opts.items():
            if isinstance(value, str):
                value = value.encode()
            setattr(self.s, name, value)

    def send(self, frames):
        dhaga.to_thread(self.s.send_multipart, frames)

    def recv(self, timeout=5.0):
        self.s.rcvtimeo = int(timeout * 1000)
        try:
            return dhaga.to_thread(self.s.recv_multipart)
        except zmq.Again:
            raise dhaga.Timeout("libzmq recv timed out", timeout) from None

    def subscribe(self, topic):
        self.s.subscribe(topic)

    def serve(self):
        port = self.s.bind_to_random_port("tcp://127.0.0.1")
        return f"tcp://127.0.0.1:{port}"

    def connect(self, endpoint):
        self.s.connect(endpoint)

    def close(self):
        self.s.close(0)


class D:
    def __init__(self, kind, opts):
        self.s = mq.Socket(kind, linger=0, **opts)

    def send(self, frames):
        self.s.send_multipart(frames, timeout=5)

    def recv(self, timeout=5.0):
        return self.s.recv_multipart(timeout=timeout)

    def subscribe(self, topic):
        self.s.subscribe(topic)

    def serve(self):
        return self.s.bind(TCP)

    def connect(self, endpoint):
        self.s.connect(endpoint)

    def close(self):
        self.s.close(linger=0)


@pytest.fixture
def pair(zctx):
    made = []

    def _pair(mechanism, client_kind, server_kind, dhaga_is_server, client_opts=None):
        copts = client_opts or options(mechanism, False)
        sopts = options(mechanism, True)
        if dhaga_is_server:
            server, client = D(server_kind, sopts), Z(zctx, client_kind, copts)
        else:
            server, client = Z(zctx, server_kind, sopts), D(client_kind, copts)
        made.extend((client, server))
        endpoint = server.serve()
        client.connect(endpoint)
        return client, server, endpoint

    yield _pair
    for sock in made:
        sock.close()
    settle()


def exchange(pattern, client, server):
    if pattern == "REQ-REP":
        for m in MESSAGES:
            client.send(m)
            assert server.recv() == m
            server.send(m[::-1])
            assert client.recv() == m[::-1]
    elif pattern == "DEALER-ROUTER":
        for m in MESSAGES:
            client.send(m)
            peer, *got = server.recv()
            assert got == m
            server.send([peer, *m[::-1]])
            assert client.recv() == m[::-1]
    elif pattern == "PUSH-PULL":
        for m in MESSAGES:
            client.send(m)
        assert [server.recv() for _ in MESSAGES] == MESSAGES
    else:  # SUB-PUB: the subscriber is the client; publish until the subscription has arrived
        client.subscribe(b"t")
        got = None
        while got is None:
            server.send([b"x-not-subscribed"])
            server.send([b"t-first", b"more"])
            try:
                got = client.recv(timeout=0.05)
            except dhaga.Timeout:
                pass
        assert got == [b"t-first", b"more"]
        for m in MESSAGES:
            server.send([b"t", *m])
        rest = [client.recv() for _ in MESSAGES]
        rest = [m for m in rest if m != [b"t-first", b"more"]]
        while len(rest) < len(MESSAGES):
            m = client.recv()
            if m != [b"t-first", b"more"]:
                rest.append(m)
        assert rest == [[b"t", *m] for m in MESSAGES]


PATTERNS = {"REQ-REP": ("REQ", "REP"), "DEALER-ROUTER": ("DEALER", "ROUTER"),
            "PUSH-PULL": ("PUSH", "PULL"), "SUB-PUB": ("SUB", "PUB")}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("dhaga_is_server", [True, False], ids=["dhaga-server", "libzmq-server"])
@pytest.mark.parametrize("mechanism", ["CURVE", "PLAIN"])
def test_interop_matrix(pair, zauth, dauth, mechanism, dhaga_is_server, pattern):
    client_kind, server_kind = PATTERNS[pattern]
    client, server, _ = pair(mechanism, client_kind, server_kind, dhaga_is_server)
    exchange(pattern, client, server)


# -- refused peers; the good ones go on ----------------------------------------------------------


def good_client_still_served(zctx, endpoint, mechanism, dhaga_client=False):
    opts = options(mechanism, False)
    good = D("PUSH", opts) if dhaga_client else Z(zctx, "PUSH", opts)
    try:
        good.connect(endpoint)
        good.send([b"good"])
        return good
    except BaseException:
        good.close()
        raise


@pytest.mark.parametrize("case", ["wrong-server-key", "unknown-client-key", "wrong-password",
                                  "null-peer"])
def test_dhaga_server_refuses(zctx, dauth, dhaga_log, case):
    mechanism = "PLAIN" if case == "wrong-password" else "CURVE"
    server = D("PULL", options(mechanism, True))
    endpoint = server.serve()
    bad_opts = {
        "wrong-server-key": options("CURVE", False, server_key=OTHER_PUBLIC),
        "unknown-client-key": options("CURVE", False, client_keys=(OTHER_PUBLIC, OTHER_SECRET)),
        "wrong-password": options("PLAIN", False, password="guess"),
        "null-peer": {},
    }[case]
    bad = Z(zctx, "PUSH", bad_opts)
    good = None
    try:
        bad.connect(endpoint)
        bad.send([b"bad"])  # queued in libzmq; must never be delivered
        reason = {
            "wrong-server-key": "HELLO does not verify",
            "unknown-client-key": "CURVE authentication failed: 400",
            "wrong-password": "PLAIN authentication failed: 400",
            # libzmq drops the connection as soon as it reads our mechanism, before its own
            # greeting is complete
            "null-peer": "PULL socket: dropped connection with",
        }[case]
        until(lambda: reason in dhaga_log.text)
        good = good_client_still_served(zctx, endpoint, mechanism)
        assert server.recv() == [b"good"]  # the bad message never came first
        with pytest.raises(dhaga.Timeout):
            server.recv(timeout=0.2)
    finally:
        for sock in (bad, good, server):
            if sock is not None:
                sock.close()
        settle()


@pytest.mark.parametrize("case", ["wrong-server-key", "unknown-client-key", "wrong-password",
                                  "null-peer"])
def test_libzmq_server_refuses_dhaga(zctx, zauth, case):
    mechanism = "PLAIN" if case == "wrong-password" else "CURVE"
    server = Z(zctx, "PULL", options(mechanism, True))
    endpoint = server.serve()
    bad_opts = {
        "wrong-server-key": options("CURVE", False, server_key=OTHER_PUBLIC),
        "unknown-client-key": options("CURVE", False, client_keys=(OTHER_PUBLIC, OTHER_SECRET)),
        "wrong-password": options("PLAIN", False, password="guess"),
        "null-peer": {},
    }[case]
    bad = D("PUSH", bad_opts)
    good = None
    try:
        bad.connect(endpoint)
        bad.send([b"bad"])
        good = good_client_still_served(zctx, endpoint, mechanism, dhaga_client=True)
        assert server.recv() == [b"good"]
        with pytest.raises(dhaga.Timeout):
            server.recv(timeout=0.2)
        if case == "unknown-client-key":  # libzmq answers ERROR 400: we stop reconnecting
            # (its PLAIN server's ERROR is malformed, "\x04\t^RROR\x03400": dropped as such)
            until(lambda: not bad.s._endpoints or all(
                h._loop is None or h._loop.done() for hs in bad.s._endpoints.values()
                for h in hs))
    finally:
        for sock in (bad, good, server):
            if sock is not None:
                sock.close()
        settle()


# -- sealed frames tampered with or replayed -----------------------------------------------------


def address(endpoint):
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    return host, int(port)


class RawCurveClient:
    """A hand-driven CURVE client over a green TCP socket, to send exactly the bytes a test
    wants after an honest handshake."""

    def __init__(self, endpoint):
        self.sock = net.create_connection(address(endpoint), timeout=5)
        self.conn = ZMTPConnection("PUSH", mechanism=CurveClient(
            z85.decode(CLIENT_PUBLIC), z85.decode(CLIENT_SECRET), z85.decode(SERVER_PUBLIC)))
        self.sock.sendall(self.conn.initiate() + self.conn.encode_ready())
        events = []
        while not any(isinstance(e, Ready) for e in events):
            data = self.sock.recv(65536)
            assert data, "the server closed during the handshake"
            events += self.conn.receive_data(data)
            self.sock.sendall(self.conn.data_to_send())

    def closed_by_peer(self):
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        return True


@pytest.mark.parametrize("attack", ["tampered", "replayed", "reordered"])
@pytest.mark.parametrize("dhaga_is_server", [True, False], ids=["dhaga-server", "libzmq-server"])
def test_tampered_and_replayed_frames_are_refused(zctx, dhaga_log, attack, dhaga_is_server):
    opts = options("CURVE", True)
    server = D("PULL", opts) if dhaga_is_server else Z(zctx, "PULL", opts)
    endpoint = server.serve()
    good = good_client_still_served(zctx, endpoint, "CURVE")
    raw = None
    try:
        assert server.recv() == [b"good"]
        raw = RawCurveClient(endpoint)
        first = raw.conn.encode_message([b"honest"])
        second = raw.conn.encode_message([b"second"])
        raw.sock.sendall(first)
        assert server.recv() == [b"honest"]
        if attack == "tampered":
            bad = bytearray(second)
            bad[-1] ^= 1  # one bit of the box
            raw.sock.sendall(bytes(bad) + raw.conn.encode_message([b"after"]))
        elif attack == "replayed":
            raw.sock.sendall(first)
        else:  # a later nonce first, then the earlier one
            third = raw.conn.encode_message([b"third"])
            raw.sock.sendall(third + second)
            assert server.recv() == [b"third"]
        assert raw.closed_by_peer()
        with pytest.raises(dhaga.Timeout):
            server.recv(timeout=0.2)  # neither the bad frame nor anything after it
        if dhaga_is_server:
            assert "MESSAGE" in dhaga_log.text
        good.send([b"good again"])
        assert server.recv() == [b"good again"]
    finally:
        if raw is not None:
            raw.sock.close()
        for sock in (good, server):
            sock.close()
        settle()
