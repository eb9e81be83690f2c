"""dhaga.mq against bad peers: each bad connection is dropped with a logged reason, the socket
keeps working with its other peers, and nothing already delivered to it is lost."""

from __future__ import annotations

import pytest
from mq_helpers import make, until  # noqa: F401 - fixture

import dhaga
from dhaga import mq, net
from dhaga.codecs.zmtp import Error, Ready, ZMTPConnection, encode_message

Timeout = dhaga.Timeout
TCP = "tcp://127.0.0.1:*"
GOOD = [[b"good-1"], [b"good-2", b""]]


def address(endpoint: str) -> tuple[str, int]:
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    return host, int(port)


class RawPeer:
    """A hand-driven ZMTP peer over a green TCP socket, to send exactly the bytes a test wants."""

    def __init__(self, endpoint: str, socket_type: str = "PUSH", **kw) -> None:
        self.sock = net.create_connection(address(endpoint), timeout=5)
        self.conn = ZMTPConnection(socket_type, **kw)
        self.events: list = []

    def handshake(self) -> None:
        self.sock.sendall(self.conn.initiate() + self.conn.encode_ready())
        while not any(isinstance(e, Ready) for e in self.events):
            self.read()

    def read(self) -> bytes:
        data = self.sock.recv(65536)
        self.events += self.conn.receive_data(data)
        return data

    def read_until_closed(self) -> None:
        while self.read():
            pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(make):
    """A bound PULL with a well-behaved PUSH peer already delivering to it."""
    pull = make(mq.PULL, maxmsgsize=1000, handshake_ivl=2000)
    endpoint = pull.bind(TCP)
    good = make(mq.PUSH)
    good.connect(endpoint)
    good.send(b"hello")
    assert pull.recv(timeout=5) == b"hello"
    return pull, good, endpoint


def still_works(pull, good) -> None:
    good.send(b"after")
    assert pull.recv(timeout=5) == b"after"


def test_garbage_greeting(server, dhaga_log):
    pull, good, endpoint = server
    raw = RawPeer(endpoint)
    raw.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw.read_until_closed()
    until(lambda: "not a ZMTP 3 peer" in dhaga_log.text)
    still_works(pull, good)
    raw.close()


def test_wrong_mechanism(server, dhaga_log):
    pull, good, endpoint = server
    raw = RawPeer(endpoint)
    plain = b"\xff" + bytes(8) + b"\x7f\x03\x01" + b"PLAIN".ljust(20, b"\0") + bytes(32)
    raw.sock.sendall(plain)
    raw.read_until_closed()
    until(lambda: "'PLAIN' mechanism" in dhaga_log.text)
    still_works(pull, good)
    raw.close()


def test_frame_over_maxmsgsize_after_good_messages(server, dhaga_log):
    pull, good, endpoint = server
    raw = RawPeer(endpoint)
    raw.handshake()
    wire = b"".join(encode_message(m) for m in GOOD)
    wire += b"\x02" + (2000).to_bytes(8, "big") + b"x" * 10  # announces 2000 bytes
    raw.sock.sendall(wire)
    raw.read_until_closed()
    assert [pull.recv_multipart(timeout=5) for _ in GOOD] == GOOD
    until(lambda: "maxmsgsize" in dhaga_log.text)
    still_works(pull, good)
    raw.close()


def test_dhaga_peer_sending_too_much_is_dropped_then_reconnects(server, dhaga_log, make):
    pull, good, endpoint = server
    big = make(mq.PUSH, reconnect_ivl=10)
    big.connect(endpoint)
    big.send(b"x" * 1001)
    until(lambda: "maxmsgsize" in dhaga_log.text)
    pipe = big._strategy.pipes[0]
    until(lambda: "PUSH socket: dropped connection" in dhaga_log.text)  # it noticed...
    until(lambda: pipe.connected)  # ...and reconnected (sent earlier, it could be lost too)
    big.send(b"small-after-reconnect")
    good.send(b"after")
    assert {pull.recv(timeout=5), pull.recv(timeout=5)} == {b"small-after-reconnect", b"after"}


def test_socket_type_mismatch_gets_an_error_command(server, dhaga_log):
    pull, good, endpoint = server
    raw = RawPeer(endpoint, socket_type="PUB")
    raw.handshake()
    raw.read_until_closed()
    errors = [e for e in raw.events if isinstance(e, Error)]
    assert errors and errors[0].reason.startswith("Incompatible-Socket-Type:PULL")
    until(lambda: "socket type mismatch" in dhaga_log.text)
    still_works(pull, good)
    raw.close()


def test_dhaga_sockets_of_mismatched_types_do_not_talk(make, dhaga_log):
    pull = make(mq.PULL)
    pub = make(mq.PUB, reconnect_ivl=10)
    pub.connect(pull.bind(TCP))
    until(lambda: dhaga_log.text.count("socket type mismatch") >= 2)
    with pytest.raises(Timeout):
        pull.recv(timeout=0.05)


def test_peer_vanishing_mid_frame(server, dhaga_log):
    pull, good, endpoint = server
    raw = RawPeer(endpoint)
    raw.handshake()
    half = encode_message([b"y" * 500])[:200]
    raw.sock.sendall(b"".join(encode_message(m) for m in GOOD) + half)
    assert [pull.recv_multipart(timeout=5) for _ in GOOD] == GOOD
    raw.close()
    until(lambda: "vanished in the middle of a frame" in dhaga_log.text)
    still_works(pull, good)


def test_garbage_after_good_messages_in_one_chunk(server, dhaga_log):
    pull, good, endpoint = server
    raw = RawPeer(endpoint)
    raw.handshake()
    raw.sock.sendall(b"".join(encode_message(m) for m in GOOD) + b"\x09garbage")
    raw.read_until_closed()
    assert [pull.recv_multipart(timeout=5) for _ in GOOD] == GOOD
    until(lambda: "set reserved bits" in dhaga_log.text)
    still_works(pull, good)
    raw.close()


def test_messages_queued_before_a_drop_stay_readable(server, dhaga_log):
    pull, good, endpoint = server
    raw = RawPeer(endpoint)
    raw.handshake()
    raw.sock.sendall(b"".join(encode_message([b"%d" % i]) for i in range(50)))
    raw.sock.sendall(b"\xffbad")
    raw.read_until_closed()
    until(lambda: "protocol error" in dhaga_log.text)
    assert [pull.recv(timeout=5) for _ in range(50)] == [b"%d" % i for i in range(50)]
    raw.close()


def test_silent_connection_fails_the_handshake_deadline(make, dhaga_log):
    pull = make(mq.PULL, handshake_ivl=50)
    raw = RawPeer(pull.bind(TCP))
    raw.read_until_closed()  # we send nothing; the server gives up
    until(lambda: "handshake not complete after 50 ms" in dhaga_log.text)
    raw.close()


def test_oversized_command_is_refused(server, dhaga_log):
    pull, good, endpoint = server
    raw = RawPeer(endpoint)
    raw.handshake()
    raw.sock.sendall(b"\x06" + (10**6).to_bytes(8, "big"))
    raw.read_until_closed()
    until(lambda: "MAX_COMMAND_SIZE" in dhaga_log.text)
    still_works(pull, good)
    raw.close()


class RawServer:
    """A listening green socket that answers ZMTP by hand."""

    def __init__(self, socket_type: str = "PULL") -> None:
        self.listener = net.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)  # every wait bounded
        self.endpoint = "tcp://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.socket_type = socket_type

    def accept(self):
        sock, _ = self.listener.accept()
        sock.settimeout(5)
        conn = ZMTPConnection(self.socket_type)
        sock.sendall(conn.initiate() + conn.encode_ready())
        events = []
        while not any(isinstance(e, Ready) for e in events):
            events += conn.receive_data(sock.recv(65536))
        return sock, conn

    def close(self) -> None:
        self.listener.close()


def test_a_peer_sending_error_is_not_retried(make, dhaga_log):
    server = RawServer()
    push = make(mq.PUSH, reconnect_ivl=5)
    push.connect(server.endpoint)
    sock, conn = server.accept()
    sock.sendall(conn.encode_error("go away"))
    until(lambda: "refused us; not reconnecting" in dhaga_log.text)
    assert "go away" in dhaga_log.text
    server.listener.settimeout(0.1)
    with pytest.raises(TimeoutError):
        server.accept()  # no second attempt
    sock.close()
    server.close()


def test_heartbeat_timeout_drops_a_silent_peer_and_reconnects(make, dhaga_log):
    server = RawServer()
    push = make(mq.PUSH, reconnect_ivl=5, heartbeat_ivl=20, heartbeat_timeout=60)
    push.connect(server.endpoint)
    first, _ = server.accept()  # handshakes, then never answers a PING
    until(lambda: "heartbeat_timeout" in dhaga_log.text)
    second, conn = server.accept()  # the socket came back
    push.send(b"over the new connection")
    events = []
    while not events:
        events += [e for e in conn.receive_data(second.recv(65536)) if hasattr(e, "frames")]
    assert events[0].frames == [b"over the new connection"]
    for s in (first, second):
        s.close()
    server.close()


def test_peer_ping_ttl_expiry_drops_the_connection(make, dhaga_log):
    pull = make(mq.PULL)
    raw = RawPeer(pull.bind(TCP))
    raw.handshake()
    raw.sock.sendall(raw.conn.encode_ping(ttl=1))  # "drop me if silent for 100 ms"
    raw.read_until_closed()  # the PONG, then the end
    assert any(type(e).__name__ == "Pong" for e in raw.events)
    until(lambda: "heartbeat TTL" in dhaga_log.text)
    raw.close()


def test_mismatch_is_judged_before_an_error_in_the_same_chunk(make, dhaga_log):
    server = RawServer(socket_type="PUSH")  # a PUSH cannot talk to our PUSH
    push = make(mq.PUSH, reconnect_ivl=5)
    push.connect(server.endpoint)
    sock, _ = server.listener.accept()
    conn = ZMTPConnection("PUSH")
    sock.sendall(conn.initiate() + conn.encode_ready() + conn.encode_error("no thanks"))
    until(lambda: "socket type mismatch: a PUSH socket cannot talk to a 'PUSH'" in dhaga_log.text)
    assert "refused us" not in dhaga_log.text
    again, _ = server.listener.accept()  # a mismatch is retried, as libzmq does
    for s in (sock, again):
        s.close()
    server.close()


def test_messages_in_the_handshake_chunk_before_garbage_are_delivered(server, dhaga_log):
    pull, good, endpoint = server
    raw = RawPeer(endpoint)
    wire = raw.conn.initiate() + raw.conn.encode_ready()
    wire += b"".join(encode_message(m) for m in GOOD) + b"\x08bad"
    raw.sock.sendall(wire)  # everything at once: the server sees it in one chunk
    raw.read_until_closed()
    assert [pull.recv_multipart(timeout=5) for _ in GOOD] == GOOD
    until(lambda: "protocol error" in dhaga_log.text)
    still_works(pull, good)
    raw.close()
