"""Hostile msgpack-rpc clients against dhaga.rpc.Server, and issue 17's items 1, 2, 4 as regressions.

Each hostile case: what the server answers (a closed connection, or an error reply), that it
still serves a good client, and that fds and memory come back to their baseline.
"""

from __future__ import annotations

import struct
import sys

import msgpack
import pytest
from reliability_kit import baseline, open_fds, send_and_read_until_closed
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

import dhaga
from dhaga import net, rpc
from dhaga.codecs.msgpack_rpc import encode_request
from dhaga.sync import Event, Queue
from dhaga.testing import settle

TCP = ("127.0.0.1", 0)


@pytest.fixture
def server():
    srv = rpc.Server(max_message_size=1 << 20, max_objects=10_000)
    srv.register("echo", lambda x: x)
    srv.listen(TCP)
    srv.start()
    yield srv
    srv.stop(timeout=0)


def still_serves(srv) -> None:
    with rpc.Client(srv.address, timeout=10) as c:
        assert c.call("echo", [1, "two", b"3"]) == [1, "two", b"3"]


def nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


CLOSES = {  # bytes after which the server must close the connection (and answer nothing)
    "array bomb (16 M empty arrays announced)": b"\xdd\x01\x00\x00\x00" + b"\x90" * 200_000,
    "map bomb (2**31 entries announced)": b"\xdf\x80\x00\x00\x00" + b"\xc0" * 1000,
    "str announcing 4 GiB": b"\x94\x00\x01\xdb\xff\xff\xff\xff" + b"x" * 1000,
    "bin over max_message_size": encode_request(1, "echo", [b"x" * (2 << 20)]),
    "never-used type byte 0xc1": b"\xc1",
    "nested 100,000 deep": nested(100_000),
    "integer map keys (hash flooding)": msgpack.packb([0, 1, "echo", [{1: 2}]]),
    "not an array": msgpack.packb({"a": 1}),
    "unknown message type": msgpack.packb([7, 1, "echo", []]),
    "msgid not an integer": msgpack.packb([0, "1", "echo", []]),
    "msgid over 32 bits": msgpack.packb([0, 2**40, "echo", []]),
    "params not an array": msgpack.packb([0, 1, "echo", "x"]),
    "method not a string": msgpack.packb([0, 1, 5, []]),
    "bad timestamp ext": b"\x94\x00\x01\xa4echo\x91\xc7\x03\xff\x00\x00\x00",
    "too many values in a small message": msgpack.packb([0, 1, "echo", [[[]] * 20_000]]),
}

ANSWERS = {  # well-formed requests the server must answer with an error, and keep serving
    "unknown method": (encode_request(1, "nope", []), "NoSuchMethod"),
    "wrong arity": (encode_request(1, "echo", [1, 2, 3]), "TypeError"),
    "method name not UTF-8 (kept as surrogates)": (b"\x94\x00\x01\xa2\xff\xfe\x90",
                                                   "NoSuchMethod"),
}


@pytest.mark.parametrize("case", sorted(CLOSES))
def test_hostile_bytes_close_that_connection_only(server, case):
    send_and_read_until_closed(server.address, CLOSES[case])  # first use: caches, imports
    still_serves(server)
    with baseline():
        answer = send_and_read_until_closed(server.address, CLOSES[case])
        assert answer == b""
        still_serves(server)


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_bad_calls_get_an_error_reply(server, case):
    wire, error = ANSWERS[case]
    still_serves(server)
    with baseline():
        sock = net.create_connection(server.address, timeout=10)
        sock.sendall(wire)
        unpacker = msgpack.Unpacker()
        while True:
            unpacker.feed(sock.recv(4096))
            replies = list(unpacker)
            if replies:
                break
        sock.close()
        del unpacker, sock
        assert replies[0][0] == 1 and replies[0][2][0] == error
        still_serves(server)


# --- item 1: a message's values are counted before any is built -------------------------------


def test_array_bomb_costs_no_memory_and_others_are_served_meanwhile():
    srv = rpc.Server(max_message_size=32 << 20)  # the default max_objects: 1,000,000
    srv.register("echo", lambda x: x)
    srv.listen(TCP)
    srv.start()
    try:
        count = 16 * 1024 * 1024
        bomb = b"\xdd" + struct.pack(">I", count) + b"\x90" * count
        with baseline() as mem:
            attack = dhaga.spawn(send_and_read_until_closed, srv.address, bomb, 30)
            with rpc.Client(srv.address, timeout=10) as c:
                served = 0
                while not attack.done():
                    assert c.call("echo", served) == served
                    served += 1
            assert attack.result() == b""
        assert mem["peak"] < 40 << 20, mem  # was 1.2 GiB: now the 16 MiB of bytes, twice at most
        still_serves(srv)
    finally:
        srv.stop(timeout=0)


# --- item 2: handlers in flight are limited, a gone client's are cancelled --------------------


class Gate:
    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.started: Queue = Queue()
        self.cancelled = 0
        self.release = Event()

    def __call__(self, i):
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.put(i)
        try:
            self.release.wait(30)
            return i
        except BaseException:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


def pipeline(address, calls: int, method: str = "gate"):
    sock = net.create_connection(address, timeout=10)
    sock.sendall(b"".join(encode_request(i, method, [i]) for i in range(calls)))
    return sock


def test_in_flight_limit_per_connection_then_cancel_when_the_client_goes():
    gate = Gate()
    srv = rpc.Server(max_in_flight=20)
    srv.register("gate", gate)
    srv.listen(TCP)
    srv.start()
    try:
        alive = dhaga.get_scheduler().alive
        sock = pipeline(srv.address, 2000)
        for _ in range(20):
            gate.started.get(timeout=10)
        settle()
        assert gate.running == 20 and gate.most == 20
        assert dhaga.get_scheduler().alive < alive + 30  # not 2,000 handler dhagas
        sock.close()
        deadline = 50
        while gate.running and deadline:  # the FIN is seen within _GONE_CHECK (0.5 s)
            dhaga.sleep(0.1)
            deadline -= 1
        assert gate.running == 0 and gate.cancelled == 20
    finally:
        gate.release.set()
        srv.stop(timeout=0)


def test_in_flight_limit_per_server_and_every_call_completes():
    gate = Gate()
    srv = rpc.Server(max_in_flight=20, max_in_flight_total=30)
    srv.register("gate", gate)
    srv.listen(TCP)
    srv.start()
    try:
        clients = [rpc.Client(srv.address, timeout=30) for _ in range(3)]
        with dhaga.Group() as g:
            calls = [g.spawn(c.call, "gate", i) for c in clients for i in range(50)]
            for _ in range(30):
                gate.started.get(timeout=10)
            settle()
            assert gate.running == 30
            gate.release.set()
        assert sorted(t.result() for t in calls) == sorted(list(range(50)) * 3)
        assert gate.most == 30
        for c in clients:
            c.close()
    finally:
        gate.release.set()
        srv.stop(timeout=0)


def test_handlers_calling_back_their_client_do_not_deadlock_on_the_limit():
    srv = rpc.Server(max_in_flight=2)

    @srv.method
    def square(x):
        return rpc.current_connection().call("mul", x, x, timeout=10)

    srv.listen(TCP)
    srv.start()
    try:
        with rpc.Client(srv.address, timeout=20) as c:
            c.register("mul", lambda a, b: a * b)
            with dhaga.Group() as g:
                calls = [g.spawn(c.call, "square", i) for i in range(10)]
            assert [t.result() for t in calls] == [i * i for i in range(10)]
    finally:
        srv.stop(timeout=0)


def test_handlers_keep_running_when_cancel_is_off():
    gate = Gate()
    srv = rpc.Server(cancel_on_disconnect=False)
    srv.register("gate", gate)
    srv.listen(TCP)
    srv.start()
    try:
        sock = pipeline(srv.address, 3)
        for _ in range(3):
            gate.started.get(timeout=10)
        sock.close()
        while srv.connections:
            dhaga.sleep(0.05)
        assert gate.running == 3 and gate.cancelled == 0
        gate.release.set()
        settle()
        assert gate.running == 0
    finally:
        gate.release.set()
        srv.stop(timeout=0)


# --- item 4: memory per idle connection, idle timeout ------------------------------------------


def test_idle_connection_memory_is_small(server):
    # The clients are plain stdlib sockets (not traced beyond their small objects): connected,
    # and their requests sent, before the count starts and before the server has accepted.
    import select
    import socket
    import tracemalloc

    count = 200
    socks = []
    with baseline(memory_slack=1 << 20):  # fd tables grown to the new fd numbers stay
        for _ in range(count):
            s = socket.create_connection(server.address)
            s.sendall(encode_request(1, "echo", [b"x" * 100]))
            socks.append(s)
        start = tracemalloc.get_traced_memory()[0]
        waiting = set(socks)
        for _ in range(1000):
            readable, _, _ = select.select(list(waiting), [], [], 0)
            for s in readable:
                assert s.recv(4096)
                waiting.discard(s)
            if not waiting:
                break
            dhaga.sleep(0.01)
        assert not waiting
        settle()
        per_connection = (tracemalloc.get_traced_memory()[0] - start) / count
        for s in socks:
            s.close()
        socks.clear()
        while server.connections:
            dhaga.sleep(0.02)
    # Was ~89 KiB for the Decoder alone. The goal (16 KiB) was set on CPython 3.11; 3.10 keeps
    # every suspended frame as a heap object and copies a deeper C stack per greenlet switch.
    goal = 16 * 1024 if sys.version_info >= (3, 11) else 18 * 1024
    assert per_connection < goal, per_connection


def test_idle_timeout_closes_a_silent_connection_but_not_a_busy_one():
    gate = Gate()
    srv = rpc.Server(idle_timeout=0.3)
    srv.register("gate", gate)
    srv.register("echo", lambda x: x)
    srv.listen(TCP)
    srv.start()
    try:
        fds = open_fds()
        assert send_and_read_until_closed(srv.address, b"", timeout=10) == b""
        with rpc.Client(srv.address, timeout=10) as c:
            busy = dhaga.spawn(c.call, "gate", 1)
            gate.started.get(timeout=10)
            dhaga.sleep(0.9)  # three idle timeouts while a request runs: still open
            assert c.connected
            gate.release.set()
            assert busy.result() == 1
            assert c.connections_opened == 1
        settle()
        assert open_fds() <= fds
    finally:
        gate.release.set()
        srv.stop(timeout=0)


def test_waiting_requests_start_when_a_slot_frees_while_the_reader_is_in_recv():
    # The handler's callback times out (no reply ever arrives): the reader, reading on for that
    # reply, sits in recv; the second request must start when the first handler ends anyway.
    srv = rpc.Server(max_in_flight=1)

    @srv.method
    def ask(x):
        try:
            return rpc.current_connection().call("never", timeout=0.2)
        except dhaga.Timeout:
            return f"no answer {x}"

    srv.listen(TCP)
    srv.start()
    try:
        with rpc.Client(srv.address, timeout=10) as c:
            c.register("never", lambda: dhaga.sleep(30))
            with dhaga.Group() as g:
                calls = [g.spawn(c.call, "ask", i) for i in range(3)]
            assert [t.result() for t in calls] == ["no answer 0", "no answer 1", "no answer 2"]
            c.connection.kill_handlers()
    finally:
        srv.stop(timeout=0)


def test_limit_defaults_and_validation():
    from dhaga.codecs.msgpack_rpc import DEFAULT_MAX_OBJECTS, Decoder

    srv = rpc.Server()
    assert (srv.max_objects, srv.max_in_flight, srv.max_in_flight_total) == (
        DEFAULT_MAX_OBJECTS, 1000, 10_000) and DEFAULT_MAX_OBJECTS == 1_000_000
    assert srv.cancel_on_disconnect is True and srv.idle_timeout is None
    assert Decoder().max_objects == DEFAULT_MAX_OBJECTS
    assert rpc.Client(("127.0.0.1", 1), max_objects=5).max_objects == 5
    for bad in (0, -1, 1.5, "3"):
        with pytest.raises(ValueError, match="max_in_flight"):
            rpc.Connection(None, rpc.Methods(), max_in_flight=bad)
