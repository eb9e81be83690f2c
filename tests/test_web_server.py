"""dhaga.web.WSGIServer over real loopback sockets, on both event loops."""

from __future__ import annotations

import http.client
import os
import socket
import ssl

import pytest
from conftest import need_peer

import dhaga
from dhaga import net
from dhaga.sync import Event
from dhaga.testing import settle
from dhaga.web import WSGIServer

pytestmark = pytest.mark.usefixtures("each_loop")


class GreenHTTPConnection(http.client.HTTPConnection):
    """http.client over a dhaga socket: a blocking client that parks only its dhaga."""

    def connect(self) -> None:
        self.sock = net.create_connection((self.host, self.port), self.timeout)


def client(server: WSGIServer, timeout: float = 10) -> GreenHTTPConnection:
    host, port = server.address[:2]
    return GreenHTTPConnection(host, port, timeout=timeout)


def fetch(conn: http.client.HTTPConnection, path: str = "/", method: str = "GET",
          body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes, dict]:
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read(), dict(r.getheaders())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def hello(env, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", env["PATH_INFO"].encode()]


@pytest.fixture
def serve():
    servers = []

    def start(app, **kw):
        srv = WSGIServer(app, ("127.0.0.1", 0), **kw)
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop(timeout=0)


def test_keep_alive_serves_many_requests_on_one_connection(serve):
    ports = []

    def app(env, start_response):
        ports.append(env["REMOTE_PORT"])
        return hello(env, start_response)

    srv = serve(app)
    assert srv.address[0] == "127.0.0.1" and srv.address[1] > 0
    conn = client(srv)
    for i in range(5):
        assert fetch(conn, f"/{i}")[:2] == (200, f"hello /{i}".encode())
    conn.close()
    assert len(set(ports)) == 1 and srv.requests == 5


def test_a_response_larger_than_the_socket_buffer_arrives_whole_and_keeps_the_connection(serve):
    big = bytes(range(256)) * (16 << 10)  # 4 MiB: the first send cannot take it all

    def app(env, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [big] if env["PATH_INFO"] == "/big" else [b"small"]

    srv = serve(app)
    conn = client(srv)
    status, body = fetch(conn, "/big")[:2]
    assert status == 200 and body == big
    assert fetch(conn, "/small")[:2] == (200, b"small")
    conn.close()


def test_written_bytearrays_and_memoryviews_arrive_intact(serve):
    def app(env, start_response):
        write = start_response("200 OK", [("Content-Length", "9")])
        write(bytearray(b"abc"))
        write(memoryview(b"def"))
        return [b"ghi"]

    srv = serve(app)
    conn = client(srv)
    assert fetch(conn)[:2] == (200, b"abcdefghi")
    assert fetch(conn)[:2] == (200, b"abcdefghi")  # and the connection is still usable
    conn.close()


def test_connections_use_tcp_nodelay(serve):
    flags = []

    def app(env, start_response):
        for conn in srv.handler.connections:
            flags.append(conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return hello(env, start_response)

    srv = serve(app)
    conn = client(srv)
    fetch(conn)
    conn.close()
    assert flags and all(flags)


def test_a_post_body_and_a_chunked_upload(serve):
    def echo(env, start_response):
        body = env["wsgi.input"].read()
        start_response("200 OK", [])
        return [body[::-1]]

    srv = serve(echo)
    conn = client(srv)
    assert fetch(conn, "/", "POST", b"abcdef")[1] == b"fedcba"
    # http.client sends an iterable body chunked
    status, body, headers = fetch(conn, "/", "POST", iter([b"12", b"345", b"6789"]))
    assert conn._http_vsn == 11
    assert (status, body) == (200, b"987654321")
    conn.close()


def test_a_request_waiting_for_its_body_parks_only_its_own_dhaga(serve):
    reading = Event()

    def app(env, start_response):
        if env["PATH_INFO"] == "/upload":
            reading.set()
            body = env["wsgi.input"].read()  # parks this request's dhaga until the rest arrives
            start_response("200 OK", [])
            return [b"got " + body]
        return hello(env, start_response)

    srv = serve(app)
    slow = net.create_connection(srv.address)
    slow.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
    reading.wait(timeout=10)
    conn = client(srv)
    assert fetch(conn, "/other")[:2] == (200, b"hello /other")  # served meanwhile
    conn.close()
    slow.sendall(b"56789")
    r = http.client.HTTPResponse(slow)
    r.begin()
    assert r.read() == b"got 0123456789"
    slow.close()


def test_a_slow_client_does_not_block_others_and_times_out(serve):
    srv = serve(hello, header_timeout=0.3)
    slow = net.create_connection(srv.address)
    slow.sendall(b"GET /slow HTTP/1.1\r\nHo")  # ... and nothing more
    conn = client(srv)
    for i in range(3):
        assert fetch(conn, f"/fast{i}")[0] == 200
    conn.close()
    slow.settimeout(10)
    data = b""
    while True:
        chunk = slow.recv(4096)
        if not chunk:
            break
        data += chunk
    slow.close()
    assert data.startswith(b"HTTP/1.1 408 ")


def test_graceful_stop_finishes_requests_in_flight(serve):
    started, release = Event(), Event()

    def app(env, start_response):
        if env["PATH_INFO"] == "/slow":
            started.set()
            release.wait(timeout=10)
            start_response("200 OK", [])
            return [b"finished"]
        return hello(env, start_response)

    srv = serve(app)
    idle = client(srv)
    assert fetch(idle, "/warm")[0] == 200  # a keep-alive connection, now idle
    busy = client(srv)
    outcome = {}

    def slow_request():
        outcome["slow"] = fetch(busy, "/slow")

    requester = dhaga.spawn(slow_request)
    started.wait(timeout=10)
    stopper = dhaga.spawn(srv.stop, 10)
    settle()
    assert not stopper.done()  # waiting for the request in flight
    # the idle connection was closed at once, and no new connection is accepted
    assert idle.sock.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        net.create_connection(srv.address)
    release.set()
    requester.result(timeout=10)
    stopper.result(timeout=10)
    status, body, headers = outcome["slow"]
    assert (status, body) == (200, b"finished") and headers["Connection"] == "close"
    idle.close()
    busy.close()


def test_stop_kills_what_outlasts_its_timeout(serve):
    started = Event()

    def app(env, start_response):
        started.set()
        dhaga.sleep(60)
        start_response("200 OK", [])
        return [b"never"]

    srv = serve(app)
    conn = client(srv)
    requester = dhaga.spawn(fetch, conn)
    started.wait(timeout=10)
    srv.stop(timeout=0.05)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        requester.result(timeout=10)
    conn.close()
    assert srv.connections == 0


def test_many_concurrent_clients(serve):
    def app(env, start_response):
        dhaga.sleep(0.05)  # every request waits: they must overlap to finish quickly
        return hello(env, start_response)

    srv = serve(app)

    def one(i):
        conn = client(srv)
        try:
            return fetch(conn, f"/{i}")[1]
        finally:
            conn.close()

    with dhaga.Group() as g:
        ds = [g.spawn(one, i) for i in range(200)]
    assert [d.result() for d in ds] == [f"hello /{i}".encode() for i in range(200)]


def test_no_descriptor_is_leaked():
    dhaga.sleep(0)  # the loop's own descriptors exist before counting
    before = open_fds()
    srv = WSGIServer(hello, ("127.0.0.1", 0))
    srv.start()
    conns = [client(srv) for _ in range(5)]
    for c in conns:
        fetch(c)
    srv.stop(timeout=1)
    for c in conns:
        c.close()
    settle()
    assert open_fds() == before


def test_unix_socket_and_prebound_socket(tmp_path):
    path = str(tmp_path / "web.sock")
    srv = WSGIServer(hello, path)
    srv.start()
    s = net.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"GET /unix HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    srv.stop(timeout=1)
    assert data.endswith(b"hello /unix")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = WSGIServer(hello, sock)
    srv.start()
    conn = client(srv)
    assert fetch(conn, "/prebound")[1] == b"hello /prebound"
    conn.close()
    srv.stop(timeout=1)


def test_https(tmp_path):
    from scripts.netkit import make_self_signed

    try:
        cert, key = make_self_signed(str(tmp_path))
    except RuntimeError as e:
        need_peer(False, str(e))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    schemes = []

    def app(env, start_response):
        schemes.append(env["wsgi.url_scheme"])
        return hello(env, start_response)

    srv = WSGIServer(app, ("127.0.0.1", 0), ssl_context=server_ctx)
    srv.start()
    try:
        sock = net.wrap_ssl(net.create_connection(srv.address, timeout=10), client_ctx,
                            server_hostname="127.0.0.1")
        sock.sendall(b"GET /secure HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
    finally:
        srv.stop(timeout=1)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"hello /secure")
    assert schemes == ["https"]


def read_all(sock) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\nHost: t\n\n",
    bytes.fromhex("16030100f4010000f00303") + os.urandom(32),  # a TLS ClientHello
])
def test_a_hopeless_head_is_answered_400_at_once_not_408_later(serve, garbage):
    srv = serve(hello, header_timeout=30)
    with net.create_connection(srv.address) as c:
        c.sendall(garbage)
        c.settimeout(5)  # far below header_timeout: a 408 would come only after 30 s
        assert read_all(c).startswith(b"HTTP/1.1 400 ")
    conn = client(srv)
    assert fetch(conn, "/still")[:2] == (200, b"hello /still")
    conn.close()


def test_a_body_that_takes_too_long_in_all_gets_408(serve):
    def app(env, start_response):
        body = env["wsgi.input"].read()
        start_response("200 OK", [])
        return [body]

    srv = serve(app, timeout=30, body_timeout=0.3)
    with net.create_connection(srv.address) as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123")
        c.settimeout(10)  # the per-read timeout (30 s) would not end it in time
        assert read_all(c).startswith(b"HTTP/1.1 408 ")
