"""dhaga.rpc failure semantics: timeouts, kills, lost connections, reconnects, bad input."""

from __future__ import annotations

import logging
import struct

import msgpack
import pytest
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

import dhaga
from dhaga import net, rpc
from dhaga.codecs.msgpack_rpc import (
    Decoder,
    Response,
    encode_notification,
    encode_request,
    encode_response,
)
from dhaga.sync import Event, Queue
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")

TCP = ("127.0.0.1", 0)


class Gate:
    """A handler that blocks until released, telling the test when each call has arrived."""

    def __init__(self) -> None:
        self.arrived: Queue = Queue()
        self.release = Event()

    def __call__(self, tag=None):
        self.arrived.put(tag)
        self.release.wait(20)
        return tag

    def wait_arrivals(self, n: int) -> list:
        return [self.arrived.get(timeout=5) for _ in range(n)]


@pytest.fixture
def gate():
    return Gate()


@pytest.fixture
def server(gate):
    srv = rpc.Server(max_message_size=4096)
    srv.register("add", lambda a, b: a + b)
    srv.register("echo", lambda x: x)
    srv.register("gate", gate)
    srv.listen(TCP)
    srv.start()
    yield srv
    gate.release.set()
    srv.stop(timeout=0)


@pytest.fixture
def client(server):
    c = rpc.Client(server.address, timeout=10)
    yield c
    c.close()


# ------------------------------------------------------------------------------ timeouts, kills
def test_call_timeout_raises_and_the_late_reply_is_dropped(client, gate, dhaga_log):
    with pytest.raises(dhaga.Timeout, match="no reply to 'gate'"):
        client.call("gate", "late", timeout=0.05)
    assert client.connection.pending == 0
    gate.release.set()  # the server now answers the call nobody waits for
    assert client.call("add", 1, 2) == 3  # replies arrive in order: the late one came first
    assert any("dropped a reply" in r.getMessage() for r in dhaga_log.records)
    assert client.connections_opened == 1  # a timeout does not break the connection


def test_client_default_timeout_and_per_call_override(server, gate):
    with rpc.Client(server.address, timeout=0.05) as c:
        unlimited = dhaga.spawn(c.call, "gate", "no limit", timeout=None)
        gate.wait_arrivals(1)
        with pytest.raises(dhaga.Timeout, match="within 0.05s"):
            c.call("gate")  # the client's default
        with pytest.raises(dhaga.Timeout, match="within 0.01s"):
            c.proxy.gate(timeout=0.01)
        assert not unlimited.done()  # outlived the client's default timeout
        gate.release.set()
        assert unlimited.result(5) == "no limit"


def test_timeout_block_around_a_call_cleans_up(client, gate):
    with pytest.raises(dhaga.Timeout) as info:
        with dhaga.timeout(0.05) as t:
            client.call("gate")
    assert info.value is t.exception
    assert client.connection.pending == 0


def test_killing_a_calling_dhaga_removes_its_pending_entry(client, gate, dhaga_log):
    caller = dhaga.spawn(client.call, "gate", "killed")
    gate.wait_arrivals(1)
    assert client.connection.pending == 1
    caller.kill()
    assert caller.killed() and client.connection.pending == 0
    gate.release.set()
    assert client.call("echo", "next") == "next"
    assert any("dropped a reply" in r.getMessage() for r in dhaga_log.records)


# ------------------------------------------------------------------------------ lost connections
def test_dropped_connection_fails_every_call_at_once_then_reconnects(server, client, gate):
    callers = [dhaga.spawn(client.call, "gate", i) for i in range(10)]
    gate.wait_arrivals(10)
    assert client.connection.pending == 10
    server.connections[0].close()  # the server drops the connection
    for d in callers:
        assert d.join(5)
    for d in callers:
        assert isinstance(d.exception(), rpc.ConnectionLost)
    assert "closed the connection" in str(callers[0].exception())
    assert not client.connected
    assert client.call("add", 2, 2) == 4  # the next call reconnects
    assert client.connections_opened == 2


def test_calls_reconnect_to_a_restarted_server(tmp_path):
    path = str(tmp_path / "restart.sock")

    def start():
        srv = rpc.Server()
        srv.register("hello", lambda: "hi")
        srv.listen(path)
        srv.start()
        return srv

    srv = start()
    with rpc.Client(path, timeout=5) as c:
        assert c.call("hello") == "hi"
        srv.stop()
        settle()  # the client's reader sees the connection close
        with pytest.raises(FileNotFoundError):
            c.call("hello")  # nobody listens (stop removed the socket file)
        srv = start()
        assert c.call("hello") == "hi"
        assert c.connections_opened == 2
    srv.stop()


@pytest.fixture
def unanswered_address():
    """A TCP listener whose backlog is full: the kernel drops new SYNs, so connect() waits."""
    listener = net.socket()
    listener.bind(TCP)
    listener.listen(0)
    fillers = []
    try:
        for _ in range(4):
            s = net.socket()
            s.setblocking(False)
            fillers.append(s)
            s.connect_ex(listener.getsockname())
        yield listener.getsockname()
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_connect_timeout_raises_timeout(unanswered_address):
    with rpc.Client(unanswered_address, connect_timeout=0.05, timeout=5) as c:
        with pytest.raises(dhaga.Timeout, match="could not connect"):
            c.call("x")
        assert not c.connected


def test_callers_waiting_for_a_connect_share_its_outcome(unanswered_address):
    with rpc.Client(unanswered_address, connect_timeout=0.1) as c:
        tasks = [dhaga.spawn(c.call, "x") for _ in range(5)]
        for t in tasks:
            assert isinstance(t.exception(5), dhaga.Timeout)
        assert c._attempts == 1  # one attempt, its outcome shared by all five callers


def test_connection_refused_is_raised_as_is(tmp_path):
    with rpc.Client(str(tmp_path / "nobody.sock")) as c:
        with pytest.raises(FileNotFoundError):
            c.call("x")


def test_client_close_fails_calls_in_flight(client, gate):
    caller = dhaga.spawn(client.call, "gate")
    gate.wait_arrivals(1)
    client.close()
    assert isinstance(caller.exception(5), rpc.ConnectionLost)
    with pytest.raises(rpc.ConnectionLost):
        client.notify("echo", 1)


def test_server_stop_with_timeout_zero_kills_running_handlers(server, client, gate):
    caller = dhaga.spawn(client.call, "gate")
    gate.wait_arrivals(1)
    server.stop(timeout=0)
    assert isinstance(caller.exception(5), rpc.ConnectionLost)
    assert server.connections == []


def test_queued_notifications_are_sent_by_close(server):
    got: Queue = Queue()
    server.register("note", got.put)
    c = rpc.Client(server.address)
    c.connect()
    for i in range(3):
        c.notify("note", i)
    c.close()  # before the writer ran: close sends the queue itself
    assert [got.get(timeout=5) for _ in range(3)] == [0, 1, 2]


def test_writers_wait_when_the_peer_does_not_read():
    accepted: Queue = Queue()
    stop = Event()

    def sink(sock, addr):
        accepted.put(sock)
        stop.wait(20)

    srv = net.StreamServer(TCP, sink)
    srv.start()
    try:
        with rpc.Client(srv.address, write_buffer_limit=64 * 1024) as c:
            sent = [0]
            big = b"x" * (1024 * 1024)

            def flood():
                for _ in range(64):
                    c.notify("data", big)
                    sent[0] += 1

            flooder = dhaga.spawn(flood)
            peer = accepted.get(timeout=5)
            settle()
            assert not flooder.done() and sent[0] < 64  # parked: the socket is full
            assert c.connection._wbytes <= 64 * 1024 + len(big) + 100
            received = 0
            while received < 64 * len(big):
                received += len(peer.recv(1 << 20))
            assert flooder.join(5) and sent[0] == 64
    finally:
        stop.set()
        srv.stop(timeout=1)


def test_a_client_that_reads_no_replies_cannot_make_the_server_queue_without_bound():
    limit, payload, count = 64 * 1024, b"p" * 64 * 1024, 400  # 25 MiB of replies in all
    peak_queued = peak_handlers = 0
    srv = rpc.Server(write_buffer_limit=limit)

    def echo(data):
        nonlocal peak_queued, peak_handlers
        conn = rpc.current_connection()
        peak_queued = max(peak_queued, conn._wbytes)
        peak_handlers = max(peak_handlers, len(conn._tasks))  # each holds its reply
        return data

    srv.register("echo", echo)
    srv.register("add", lambda a, b: a + b)
    srv.listen(TCP)
    srv.start()
    flood = _raw_connect(srv.address)
    flood.settimeout(None)
    try:
        request = encode_request(1, "echo", [payload])
        flooder = dhaga.spawn(flood.sendall, request * count)
        with rpc.Client(srv.address, timeout=5) as other:
            assert other.call("add", 1, 2) == 3  # served meanwhile
        decoder, replies = Decoder(), 0
        while replies < count:  # now read everything: every reply arrives, intact
            for msg in decoder.feed(flood.recv(1 << 20)):
                assert msg == Response(1, None, payload)
                replies += 1
        assert flooder.join(5)
        # The server held about one limit and one read's worth of replies, not 25 MiB.
        assert peak_queued <= limit + 512 * 1024, peak_queued
        assert peak_handlers <= 16, peak_handlers
    finally:
        flood.close()
        srv.stop(timeout=0)


# ------------------------------------------------------------------------------ bad input
BAD_INPUT = {
    "invalid type byte": (b"\xc1", "malformed msgpack"),
    "not an array": (msgpack.packb(42), "must be an array"),
    "unknown message type": (msgpack.packb([7, 1, "m", []]), "message type must be"),
    "msgid not an int": (msgpack.packb([0, "one", "add", [1, 2]]), "msgid must be an integer"),
    "params not an array": (msgpack.packb([0, 1, "add", 3]), "params must be an array"),
    "request with 3 elements": (msgpack.packb([0, 1, "add"]), "must have 4 elements"),
    "method not a string": (msgpack.packb([2, 5, []]), "method must be a string"),
    "map with int keys": (msgpack.packb([0, 1, "echo", [{1: 2}]]), "malformed msgpack"),
    "oversized message": (encode_request(1, "echo", [b"x" * 5000]), "max_message_size"),
    "announces 4 GiB": (b"\x94\x00\x01\xa4echo\x91\xc6" + struct.pack(">I", 2**32 - 1),
                        "max_message_size"),
}


def _raw_connect(address):
    return net.create_connection(address, timeout=5)


def _recv_until_closed(sock) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_closes_only_that_connection(server, client, case, dhaga_log):
    data, reason = BAD_INPUT[case]
    assert client.call("add", 1, 1) == 2  # a client connected before...
    bad = _raw_connect(server.address)
    try:
        bad.sendall(encode_request(9, "add", [20, 22]))  # served while the bytes are good
        assert Decoder().feed(bad.recv(65536)) == [Response(9, None, 42)]
        bad.sendall(data)
        assert _recv_until_closed(bad) == b""  # then closed, with no answer
    finally:
        bad.close()
    warnings = [r.getMessage() for r in dhaga_log.records
                if r.levelno == logging.WARNING and r.name == "dhaga.rpc"]
    assert any(reason in w and "closing rpc connection with ('127.0.0.1'," in w
               for w in warnings), warnings
    assert client.call("add", 2, 3) == 5  # ...is still served,
    with rpc.Client(server.address) as fresh:
        assert fresh.call("add", 3, 4) == 7  # and so are new ones
    assert client.connections_opened == 1


def test_default_message_limit_is_64_mib_and_configurable():
    assert rpc.Server().max_message_size == rpc.DEFAULT_MAX_MESSAGE_SIZE == 64 * 1024 * 1024
    assert rpc.Client(("127.0.0.1", 1), max_message_size=10).max_message_size == 10


def test_oversized_reply_fails_the_clients_calls(server):
    with rpc.Client(server.address, max_message_size=1000, timeout=5) as c:
        with pytest.raises(rpc.ConnectionLost) as info:
            c.call("echo", "y" * 2000)  # the request fits the server's limit, the reply not ours
        assert isinstance(info.value.__cause__, rpc.MessageTooLarge)
        assert c.call("echo", "small") == "small"  # reconnected


def _one_shot_server(reply: bytes):
    """A hand-written peer that answers the first request with ``reply``, then waits."""
    done = Event()

    def handler(sock, addr):
        decoder = Decoder()
        while not decoder.feed(sock.recv(65536)):
            pass
        sock.sendall(reply)
        done.wait(10)

    srv = net.StreamServer(TCP, handler)
    srv.start()
    return srv, done


def test_garbage_from_the_server_fails_pending_calls_with_connection_lost(dhaga_log):
    srv, done = _one_shot_server(b"\xc1garbage")
    try:
        with rpc.Client(srv.address, timeout=5) as c:
            with pytest.raises(rpc.ConnectionLost) as info:
                c.call("anything")
            assert isinstance(info.value.__cause__, rpc.ProtocolError)
            assert not c.connected
        assert any("malformed msgpack" in r.getMessage() for r in dhaga_log.records)
    finally:
        done.set()
        srv.stop(timeout=1)


def test_server_hanging_up_mid_message_is_reported():
    srv, done = _one_shot_server(encode_response(1, None, "truncated")[:-3])
    done.set()  # the handler returns at once: the socket closes after the partial reply
    try:
        with rpc.Client(srv.address, timeout=5) as c:
            with pytest.raises(rpc.ConnectionLost, match="middle of a message"):
                c.call("anything")
    finally:
        srv.stop(timeout=1)


def test_reply_to_an_unknown_msgid_is_dropped(server, client, dhaga_log):
    srv, done = _one_shot_server(encode_response(999, None, "nobody") +
                                 encode_response(1, None, "mine"))
    try:
        with rpc.Client(srv.address, timeout=5) as c:
            assert c.call("anything") == "mine"
        assert any("msgid 999" in r.getMessage() for r in dhaga_log.records)
    finally:
        done.set()
        srv.stop(timeout=1)


def test_failing_and_unknown_notification_handlers_are_logged(server, client, dhaga_log):
    def broken(x):
        raise RuntimeError(f"broken {x}")

    server.register("broken", broken)
    sock = _raw_connect(server.address)
    try:
        sock.sendall(encode_notification("broken", [1]) + encode_notification("missing", []) +
                     encode_request(1, "add", [1, 2]))
        assert Decoder().feed(sock.recv(65536)) == [Response(1, None, 3)]
        settle()
    finally:
        sock.close()
    messages = [r.getMessage() for r in dhaga_log.records]
    failed = [r for r in dhaga_log.records if "notification 'broken'" in r.getMessage()]
    assert failed and failed[0].exc_info and "broken 1" in str(failed[0].exc_info[1])
    assert any("no handler for notification 'missing'" in m for m in messages)
