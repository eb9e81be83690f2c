"""dhaga.rpc: every API row, multiplexing, out-of-order replies, symmetric endpoints, TLS."""

from __future__ import annotations

import asyncio
import ssl
import threading

import msgpack
import pytest
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture
from scripts.netkit import make_self_signed

import dhaga
from dhaga import net, rpc
from dhaga.codecs.msgpack_rpc import (
    MAX_MSGID,
    Decoder,
    Request,
    encode_response,
)
from dhaga.sync import Event, Queue
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")

TCP = ("127.0.0.1", 0)


class Calculator:
    def __init__(self) -> None:
        self.total = 0

    def add(self, a, b):
        return a + b

    def accumulate(self, n):
        self.total += n
        return self.total

    def _private(self):  # never registered
        return "secret"


@pytest.fixture
def server():
    srv = rpc.Server()

    @srv.method
    def add(a, b):
        return a + b

    @srv.method(name="echo")
    def echo_anything(*args):
        return list(args)

    srv.register("upper", str.upper)
    srv.register_object(Calculator(), prefix="calc.")
    srv.listen(TCP)
    srv.start()
    yield srv
    srv.stop(timeout=0)


@pytest.fixture
def client(server):
    c = rpc.Client(server.address, timeout=10)
    yield c
    c.close()


# ------------------------------------------------------------------------------ API rows
def test_call_register_decorator_object_and_proxy(server, client):
    assert client.call("add", 2, 3) == 5
    assert client.call("echo", 1, "two", b"3", None, [4.5], {"k": True}) == [
        1, "two", b"3", None, [4.5], {"k": True}]
    assert client.call("upper", "abc") == "ABC"
    assert client.call("calc.add", 1, 1) == 2
    assert client.call("calc.accumulate", 5) == 5 and client.call("calc.accumulate", 5) == 10
    assert "calc._private" not in server.methods and "calc.add" in server.methods
    assert client.proxy.add(10, 20) == 30
    assert client.proxy["calc.add"](7, 8) == 15
    assert client.proxy.add.__name__ == "add"
    with pytest.raises(AttributeError):
        client.proxy._hidden  # noqa: B018


def test_server_address_is_bound_and_listen_returns_it(server):
    host, port = server.address
    assert host == "127.0.0.1" and port != 0
    assert server.addresses == [server.address]


def test_unix_socket_and_second_listen_address(server, tmp_path):
    path = str(tmp_path / "rpc.sock")
    assert server.listen(path) == path  # a started server accepts on it at once
    with rpc.Client(path) as c:
        assert c.call("add", 1, 2) == 3
        assert c.proxy.upper("unix") == "UNIX"
    assert server.addresses[1] == path


def test_call_from_dhagas_and_top_level(client):
    assert client.call("add", 1, 1) == 2  # top level: drives the loop
    assert dhaga.run(client.call, "add", 2, 2) == 4  # in a dhaga


def test_notify_reaches_the_server_handler(server, client):
    got: Queue = Queue()
    server.register("log", lambda *a: got.put(a))
    client.notify("log", "hello", 1)
    assert got.get(timeout=5) == ("hello", 1)


def test_client_context_manager_closes_and_refuses_later_calls(server):
    with rpc.Client(server.address) as c:
        assert c.call("add", 1, 2) == 3
        assert c.connected
    assert not c.connected
    with pytest.raises(rpc.ConnectionLost, match="closed"):
        c.call("add", 1, 2)


def test_client_connects_lazily_and_on_demand(server):
    c = rpc.Client(server.address)
    try:
        assert not c.connected and c.connections_opened == 0
        conn = c.connect()
        assert c.connected and c.connection is conn and c.connect() is conn
        assert c.connections_opened == 1
    finally:
        c.close()


def test_serve_forever_until_stop():
    srv = rpc.Server()
    srv.register("ping", lambda: "pong")
    address = srv.listen(TCP)
    runner = dhaga.spawn(srv.serve_forever)
    with rpc.Client(address) as c:
        assert c.call("ping") == "pong"
        assert len(srv.connections) == 1
        srv.stop()
        assert runner.join(5) and runner.exception() is None
        assert srv.connections == []
        with pytest.raises(ConnectionRefusedError):
            c.call("ping")  # the connection and the listener are closed: reconnecting fails


def test_stopping_a_server_that_never_started_closes_its_sockets(tmp_path):
    srv = rpc.Server()
    srv.listen(TCP)
    path = srv.listen(str(tmp_path / "never.sock"))
    srv.stop()  # the fd-leak fixture checks both sockets were closed
    assert not (tmp_path / "never.sock").exists() and path.endswith("never.sock")


def test_server_context_manager_starts_and_stops():
    srv = rpc.Server()
    srv.register("ping", lambda: "pong")
    srv.listen(TCP)
    with srv, rpc.Client(srv.address) as c:
        assert c.call("ping") == "pong"
    assert srv.connections == []


def test_stop_lets_running_requests_reply_first(server, client):
    started, release = Event(), Event()

    def slow():
        started.set()
        release.wait()
        return "finished"

    server.register("slow", slow)
    caller = dhaga.spawn(client.call, "slow")
    assert started.wait(5)
    stopper = dhaga.spawn(server.stop, 5)
    settle()
    assert not stopper.done() and not caller.done()
    release.set()
    assert caller.result(5) == "finished"
    assert stopper.join(5)


def test_a_handler_can_stop_its_own_server():
    srv = rpc.Server()
    srv.register("shutdown", lambda: srv.stop(timeout=1) or "stopped")
    srv.listen(TCP)
    runner = dhaga.spawn(srv.serve_forever)
    with rpc.Client(srv.address, timeout=5) as c:
        with pytest.raises(rpc.ConnectionLost):
            c.call("shutdown")  # stop closed the connection the reply was due on
        assert runner.join(5)
        with pytest.raises(ConnectionRefusedError):
            c.call("shutdown")  # and stop went through to the end: nobody listens

    srv = rpc.Server()
    srv.register("shutdown_later", lambda: dhaga.spawn(srv.stop, 1) and "bye")
    srv.listen(TCP)
    runner = dhaga.spawn(srv.serve_forever)
    with rpc.Client(srv.address, timeout=5) as c:
        assert c.call("shutdown_later") == "bye"  # stop waited for the reply to be sent
        assert runner.join(5)


def test_closing_a_client_while_it_connects():
    srv = rpc.Server()
    srv.listen(TCP)
    srv.start()
    c = rpc.Client(srv.address)
    caller = dhaga.spawn(c.call, "anything")
    dhaga.sleep(0)  # the caller starts connecting
    c.close()
    assert isinstance(caller.exception(5), rpc.ConnectionLost)
    assert not c.connected
    srv.stop()


def test_register_rejects_bad_arguments(server):
    with pytest.raises(TypeError):
        server.register("x", 42)
    with pytest.raises(TypeError):
        server.register(b"x", print)


# ------------------------------------------------------------------------------ errors
def test_handler_exception_is_remote_error_with_type_and_message(server, client):
    def fail(msg):
        raise ValueError(msg)

    server.register("fail", fail)
    with pytest.raises(rpc.RemoteError) as info:
        client.call("fail", "bad input")
    assert info.value.error == ["ValueError", "bad input"]
    assert info.value.type == "ValueError"
    assert str(info.value) == "ValueError: bad input"
    assert client.call("add", 1, 2) == 3  # the connection survives


def test_unknown_method_is_a_clear_remote_error(client):
    with pytest.raises(rpc.RemoteError) as info:
        client.call("no_such_thing", 1)
    assert info.value.error == ["NoSuchMethod", "unknown method 'no_such_thing'"]


def test_handler_raising_remote_error_sends_its_object(server, client):
    def custom():
        raise rpc.RemoteError({"code": 7, "why": "custom"})

    server.register("custom", custom)
    with pytest.raises(rpc.RemoteError) as info:
        client.call("custom")
    assert info.value.error == {"code": 7, "why": "custom"}


def test_unencodable_result_is_reported_to_the_caller(server, client):
    server.register("obj", lambda: object())
    with pytest.raises(rpc.RemoteError) as info:
        client.call("obj")
    assert info.value.type == "TypeError" and "cannot encode" in info.value.error[1]


def test_unencodable_argument_fails_locally_and_leaves_nothing_pending(client):
    client.connect()
    with pytest.raises(TypeError):
        client.call("add", object(), 1)
    assert client.connection.pending == 0
    assert client.call("add", 1, 1) == 2


def test_blocking_call_in_a_coroutine_raises_blocking_error(client):
    client.connect()

    async def in_loop():
        return client.call("add", 1, 2)

    with pytest.raises(dhaga.BlockingError):
        dhaga.wait(in_loop())
    assert client.call("add", 1, 2) == 3


def test_client_belongs_to_its_thread(client):
    client.connect()
    errors = []

    def other_thread():
        try:
            client.call("add", 1, 2)
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(10)
    assert errors and "OS thread" in str(errors[0])


# ------------------------------------------------------------------------------ concurrency
def test_hundred_dhagas_share_one_connection(server, client):
    def slow_echo(x):
        dhaga.sleep(0.01)
        return x

    server.register("slow_echo", slow_echo)
    with dhaga.Group() as g:
        tasks = [g.spawn(client.call, "slow_echo", i) for i in range(100)]
    assert [t.result() for t in tasks] == list(range(100))
    assert client.connections_opened == 1 and len(server.connections) == 1


def test_slow_call_never_holds_up_a_fast_one_on_the_same_connection(server, client):
    started, release = Event(), Event()
    server.register("slow", lambda: started.set() or release.wait(10) and "slow")
    slow = dhaga.spawn(client.call, "slow")
    assert started.wait(5)
    assert client.call("add", 1, 2) == 3  # answered while "slow" still runs
    assert not slow.done() and client.connection.pending == 1
    release.set()
    assert slow.result(5) == "slow"


def test_replies_completing_in_reverse_order_reach_their_callers(server, client):
    gates = {i: Event() for i in range(5)}
    finished: list[int] = []
    waiting: Queue = Queue()

    def wait_gate(i):
        waiting.put(i)
        gates[i].wait(10)
        return i * 10

    server.register("wait_gate", wait_gate)

    def caller(i):
        result = client.call("wait_gate", i)
        finished.append(i)
        return result

    tasks = [dhaga.spawn(caller, i) for i in range(5)]
    assert sorted(waiting.get(timeout=5) for _ in range(5)) == list(range(5))
    for i in reversed(range(5)):
        gates[i].set()
        assert tasks[i].result(5) == i * 10
    assert finished == [4, 3, 2, 1, 0]


def _raw_server(handler):
    """A msgpack-rpc peer written by hand: ``handler(sock, decoder)`` serves one connection."""
    srv = net.StreamServer(TCP, lambda sock, addr: handler(sock, Decoder()))
    srv.start()
    return srv


def _read_requests(sock, decoder, n):
    requests: list[Request] = []
    while len(requests) < n:
        data = sock.recv(65536)
        assert data, "client hung up"
        requests += decoder.feed(data)
    return requests


def test_out_of_order_replies_on_the_wire_are_matched_by_msgid():
    def reverse_replies(sock, decoder):
        requests = _read_requests(sock, decoder, 3)
        # All three answers in one write, last request first.
        sock.sendall(b"".join(encode_response(r.msgid, None, r.params[0] * 2)
                              for r in reversed(requests)))
        sock.recv(1)  # until the client hangs up

    srv = _raw_server(reverse_replies)
    try:
        with rpc.Client(srv.address, timeout=5) as c:
            tasks = [dhaga.spawn(c.call, "double", x) for x in ("a", "b", "c")]
            assert [t.result(5) for t in tasks] == ["aa", "bb", "cc"]
    finally:
        srv.stop(timeout=1)


def test_msgids_wrap_at_2_to_the_32():
    seen: list[int] = []

    def echo_ids(sock, decoder):
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for r in decoder.feed(data):
                seen.append(r.msgid)
                sock.sendall(encode_response(r.msgid, None, r.msgid))

    srv = _raw_server(echo_ids)
    try:
        with rpc.Client(srv.address, timeout=5) as c:
            c.connect()._msgid = MAX_MSGID - 1
            assert [c.call("id") for _ in range(3)] == [MAX_MSGID, 0, 1]
        assert seen == [MAX_MSGID, 0, 1]
    finally:
        srv.stop(timeout=1)


# ------------------------------------------------------------------------------ symmetry
def test_server_handler_calls_back_and_notifies_its_client(server):
    def square_via_client(x):
        conn = rpc.current_connection()
        conn.notify("progress", f"squaring {x}")
        return conn.call("client_mul", x, x)

    server.register("square_via_client", square_via_client)
    progress: Queue = Queue()
    with rpc.Client(server.address, timeout=5) as c:
        c.register("client_mul", lambda a, b: a * b)

        @c.method(name="progress")
        def on_progress(text):
            progress.put(text)

        assert c.call("square_via_client", 7) == 49
        assert progress.get(timeout=5) == "squaring 7"


def test_client_registered_handler_errors_reach_the_server(server):
    def ask_client():
        try:
            rpc.current_connection().call("not_registered_on_client")
        except rpc.RemoteError as e:
            return e.error[0]

    server.register("ask_client", ask_client)
    with rpc.Client(server.address, timeout=5) as c:
        assert c.call("ask_client") == "NoSuchMethod"


def test_current_connection_outside_a_handler_raises():
    with pytest.raises(LookupError):
        rpc.current_connection()


def test_neovim_ext_handles_round_trip(server, client):
    server.register("handle_info", lambda h: [h.kind, h.handle, h])
    kind, number, back = client.call("handle_info", rpc.ExtHandle(1, 1000))
    assert (kind, number) == ("Window", 1000) and back == rpc.ExtHandle(1, 1000)


def test_other_ext_types_stay_plain_values(server, client):
    server.register("type_of", lambda v: type(v).__name__)
    assert client.call("type_of", msgpack.ExtType(42, b"data")) == "ExtType"


# ------------------------------------------------------------------------------ TLS
def test_tls(server, tmp_path):
    cert, key = make_self_signed(str(tmp_path))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    address = server.listen(TCP, ssl_context=server_ctx)
    with rpc.Client(address, ssl_context=client_ctx, timeout=10) as c:
        with dhaga.Group() as g:
            tasks = [g.spawn(c.call, "add", i, i) for i in range(20)]
        assert [t.result() for t in tasks] == [2 * i for i in range(20)]
        assert isinstance(c.connection._sock, ssl.SSLSocket)


def test_tls_client_refuses_an_untrusted_server(server, tmp_path):
    cert, key = make_self_signed(str(tmp_path))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    address = server.listen(TCP, ssl_context=server_ctx)
    with rpc.Client(address, ssl_context=ssl.create_default_context(), timeout=10) as c:
        with pytest.raises(ssl.SSLCertVerificationError):
            c.call("add", 1, 2)
        assert not c.connected


def test_asyncio_code_awaits_a_green_rpc_call(client):
    @dhaga.green
    def add(a, b):
        return client.call("add", a, b)

    async def main():
        return await asyncio.gather(add(1, 2), add(3, 4))

    assert dhaga.wait(main()) == [3, 7]
