"""TLS over green sockets: both sides, interop with the standard library, timeouts, shutdown."""

from __future__ import annotations

import errno
import logging
import os
import socket as stdsocket
import ssl
import threading

import pytest
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture
from scripts.netkit import make_self_signed

import dhaga
from dhaga import net
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_self_signed(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def server_ctx(certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*certs)
    return ctx


@pytest.fixture
def client_ctx(certs):
    return ssl.create_default_context(cafile=certs[0])


def tcp_pair():
    lst = net.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    cli = net.create_connection(lst.getsockname(), timeout=5)
    srv, _ = lst.accept()
    lst.close()
    return cli, srv


def test_both_sides_green_handshake_data_and_unwrap(server_ctx, client_ctx):
    cli, srv = tcp_pair()
    server_side = dhaga.spawn(net.wrap_ssl, srv, server_ctx, server_side=True)
    tls_cli = net.wrap_ssl(cli, client_ctx, server_hostname="127.0.0.1")
    tls_srv = server_side.result(5)
    assert isinstance(tls_cli, ssl.SSLSocket) and isinstance(tls_cli, net.socket)
    assert tls_cli.version() == tls_srv.version() and tls_cli.version().startswith("TLS")
    assert dict(x[0] for x in tls_cli.getpeercert()["subject"])["commonName"] == "127.0.0.1"
    assert cli.fileno() == -1  # detached into the TLS socket, as the stdlib does

    payload = os.urandom(2 * 1024 * 1024)  # bigger than the socket buffers: WantWrite happens
    reader = dhaga.spawn(lambda: b"".join(iter(lambda: tls_srv.recv(65536), b"")))
    tls_cli.sendall(payload)
    # TLS shutdown from both sides; the plain sockets keep working afterwards
    closer = dhaga.spawn(tls_cli.unwrap)
    assert reader.result(10) == payload
    plain_srv = tls_srv.unwrap()
    plain_cli = closer.result(5)
    plain_cli.sendall(b"clear text")
    assert plain_srv.recv(100) == b"clear text"
    for s in (plain_cli, plain_srv, tls_cli, tls_srv):
        s.close()


def test_green_client_against_a_stdlib_server_thread(server_ctx, client_ctx):
    lst = stdsocket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)

    def serve():  # plain blocking stdlib code in a real thread
        conn, _ = lst.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(100).upper())

    t = threading.Thread(target=serve)
    t.start()
    with net.create_connection(lst.getsockname(), timeout=5) as raw:
        with net.wrap_ssl(raw, client_ctx, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"hello")
            assert tls.recv(100) == b"HELLO"
    t.join(5)
    lst.close()


def test_green_server_against_a_stdlib_client_thread(server_ctx, client_ctx):
    answers = []

    def handler(sock, addr):
        assert isinstance(sock, net.SSLSocket)
        sock.sendall(b"hi " + sock.recv(100))

    server = net.StreamServer(("127.0.0.1", 0), handler, ssl_context=server_ctx)
    server.start()

    def client():
        with stdsocket.create_connection(server.address, timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"there")
                answers.append(tls.recv(100))

    t = threading.Thread(target=client)
    t.start()
    while t.is_alive():
        dhaga.sleep(0.01)  # keep the loop running for the server while the thread works
    server.stop(timeout=1)
    assert answers == [b"hi there"]


def test_failed_handshake_raises_and_the_server_keeps_serving(server_ctx, client_ctx, dhaga_log):
    server = net.StreamServer(("127.0.0.1", 0), lambda s, a: s.sendall(s.recv(10)),
                              ssl_context=server_ctx)
    server.start()
    try:
        untrusting = ssl.create_default_context()  # does not know our self-signed CA
        with net.create_connection(server.address, timeout=5) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                net.wrap_ssl(raw, untrusting, server_hostname="127.0.0.1")
        with net.create_connection(server.address, timeout=5) as raw:
            with net.wrap_ssl(raw, client_ctx, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"ok")
                assert tls.recv(10) == b"ok"
    finally:
        server.stop(timeout=1)
    assert any("handshake" in r.getMessage() for r in dhaga_log.records)


def test_tls_read_timeout_and_makefile(server_ctx, client_ctx):
    cli, srv = tcp_pair()
    server_side = dhaga.spawn(net.wrap_ssl, srv, server_ctx, server_side=True)
    tls_cli = net.wrap_ssl(cli, client_ctx, server_hostname="127.0.0.1")
    tls_srv = server_side.result(5)
    tls_cli.settimeout(0.02)
    with pytest.raises(TimeoutError, match="The read operation timed out"):
        tls_cli.recv(10)
    tls_cli.settimeout(5)
    f = tls_srv.makefile("rwb")
    f.write(b"line one\n")
    f.flush()
    assert tls_cli.makefile("rb").readline() == b"line one\n"
    f.close()
    tls_cli.close()
    tls_srv.close()


def test_tls_nonblocking_raises_want_read(server_ctx, client_ctx):
    cli, srv = tcp_pair()
    server_side = dhaga.spawn(net.wrap_ssl, srv, server_ctx, server_side=True)
    tls_cli = net.wrap_ssl(cli, client_ctx, server_hostname="127.0.0.1")
    tls_srv = server_side.result(5)
    tls_cli.setblocking(False)
    with pytest.raises(ssl.SSLWantReadError):
        tls_cli.recv(10)
    tls_cli.close()
    tls_srv.close()


def test_closing_a_tls_socket_wakes_its_reader(server_ctx, client_ctx):
    cli, srv = tcp_pair()
    server_side = dhaga.spawn(net.wrap_ssl, srv, server_ctx, server_side=True)
    tls_cli = net.wrap_ssl(cli, client_ctx, server_hostname="127.0.0.1")
    tls_srv = server_side.result(5)
    reader = dhaga.spawn(tls_cli.recv, 10)
    settle()
    assert not reader.done()
    tls_cli.close()
    with pytest.raises(OSError) as e:
        reader.result(5)
    assert e.value.errno == errno.EBADF
    tls_srv.close()


def test_unconnected_client_handshakes_in_connect(server_ctx, client_ctx):
    def handler(sock, addr):
        sock.sendall(sock.version().encode())

    server = net.StreamServer(("127.0.0.1", 0), handler, ssl_context=server_ctx)
    server.start()
    try:
        tls = net.wrap_ssl(net.socket(), client_ctx, server_hostname="127.0.0.1")
        tls.settimeout(5)
        tls.connect(server.address)
        assert tls.recv(20).startswith(b"TLS")
        tls.close()
    finally:
        server.stop(timeout=1)


def test_many_concurrent_tls_clients(server_ctx, client_ctx):
    def handler(sock, addr):
        sock.sendall(sock.recv(100)[::-1])

    server = net.StreamServer(("127.0.0.1", 0), handler, ssl_context=server_ctx)
    server.start()

    def client(i):
        with net.create_connection(server.address, timeout=10) as raw:
            with net.wrap_ssl(raw, client_ctx, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"abc%d" % i)
                return tls.recv(100)

    try:
        results = [d.result(20) for d in [dhaga.spawn(client, i) for i in range(30)]]
        assert results == [(b"abc%d" % i)[::-1] for i in range(30)]
    finally:
        server.stop(timeout=1)


def test_log_level_for_handshake_failures_is_not_error(server_ctx, dhaga_log):
    server = net.StreamServer(("127.0.0.1", 0), lambda s, a: None, ssl_context=server_ctx)
    server.start()
    try:
        with net.create_connection(server.address, timeout=5) as raw:
            raw.sendall(b"this is not a TLS hello\r\n\r\n")
            try:
                assert raw.recv(100) == b""  # the server hung up
            except ConnectionResetError:
                pass  # ... with our garbage unread: a reset
    finally:
        server.stop(timeout=1)
    assert not [r for r in dhaga_log.records if r.levelno >= logging.ERROR]
