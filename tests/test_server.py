"""StreamServer: a dhaga per connection, limits, graceful stop, reuse_port, accept errors."""

from __future__ import annotations

import errno
import logging
import os
import tempfile

import pytest
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

import dhaga
from dhaga import net
from dhaga.sync import Event
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")


def echo(sock, addr):
    while True:
        data = sock.recv(4096)
        if not data:
            return
        sock.sendall(data)


def roundtrip(address, payload=b"ping"):
    with net.create_connection(address, timeout=5) as c:
        c.sendall(payload)
        return c.recv(100)


def test_echo_many_clients_each_in_its_own_dhaga():
    peak = [0]

    def handler(sock, addr):
        peak[0] = max(peak[0], server.connections)
        echo(sock, addr)

    server = net.StreamServer(("127.0.0.1", 0), handler)
    server.start()
    try:
        host, port = server.address
        assert host == "127.0.0.1" and port != 0
        clients = [net.create_connection(server.address, timeout=5) for _ in range(50)]
        for i, c in enumerate(clients):
            c.sendall(b"n%d" % i)
        assert [c.recv(100) for c in clients] == [b"n%d" % i for i in range(50)]
        assert peak[0] == 50  # all connections were being served at once
        for c in clients:
            c.close()
    finally:
        server.stop(timeout=5)


def test_failing_handler_is_logged_and_server_keeps_serving(dhaga_log):
    def handler(sock, addr):
        data = sock.recv(100)
        if data == b"boom":
            raise ValueError("handler exploded")
        sock.sendall(data)

    server = net.StreamServer(("127.0.0.1", 0), handler)
    server.start()
    try:
        with net.create_connection(server.address, timeout=5) as c:
            c.sendall(b"boom")
            assert c.recv(10) == b""  # the server closed the connection
        assert roundtrip(server.address, b"fine") == b"fine"
    finally:
        server.stop(timeout=5)
    errors = [r for r in dhaga_log.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "handler exploded" in str(errors[0].exc_info[1])


def test_max_connections_holds_new_ones_in_the_backlog():
    release = Event()
    served = []

    def handler(sock, addr):
        served.append(sock.recv(10))
        release.wait()
        sock.sendall(b"done")

    server = net.StreamServer(("127.0.0.1", 0), handler, max_connections=2)
    server.start()
    try:
        clients = [net.create_connection(server.address, timeout=5) for _ in range(3)]
        for i, c in enumerate(clients):
            c.sendall(b"c%d" % i)
        settle()
        assert server.connections == 2 and len(served) == 2  # the third waits in the backlog
        release.set()
        assert [c.recv(10) for c in clients] == [b"done"] * 3
        assert sorted(served) == [b"c0", b"c1", b"c2"]
        for c in clients:
            c.close()
    finally:
        server.stop(timeout=5)


def test_stop_waits_for_handlers_then_kills_the_rest():
    finished = []
    killed = []

    def handler(sock, addr):
        what = sock.recv(10)
        try:
            if what == b"quick":
                dhaga.sleep(0.05)
                finished.append(what)
            else:
                sock.recv(10)  # never returns: the client sends nothing more
        except dhaga.Killed:
            killed.append(what)
            raise

    server = net.StreamServer(("127.0.0.1", 0), handler)
    server.start()
    quick = net.create_connection(server.address, timeout=5)
    stuck = net.create_connection(server.address, timeout=5)
    quick.sendall(b"quick")
    stuck.sendall(b"stuck")
    settle()
    assert server.connections == 2
    server.stop(timeout=0.5)
    assert finished == [b"quick"] and killed == [b"stuck"]
    assert server.connections == 0
    assert quick.recv(10) == b"" and stuck.recv(10) == b""  # both closed by the server
    with pytest.raises(ConnectionRefusedError):
        net.create_connection(server.address, timeout=5)
    quick.close()
    stuck.close()


def test_serve_forever_returns_after_stop():
    server = net.StreamServer(("127.0.0.1", 0), echo)
    runner = dhaga.spawn(server.serve_forever)
    settle()
    assert roundtrip(server.address) == b"ping"
    server.stop(timeout=1)
    assert runner.join(5) and runner.result() is None


def test_context_manager_and_unix_socket():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "echo.sock")
        with net.StreamServer(path, echo) as server:
            assert server.address == path
            with net.socket(net.AF_UNIX) as c:
                c.connect(path)
                c.sendall(b"over unix")
                assert c.recv(100) == b"over unix"


def test_reuse_port_lets_two_servers_share_one_port():
    who = []

    def tagged(tag):
        def handler(sock, addr):
            sock.recv(10)
            who.append(tag)
            sock.sendall(tag)
        return handler

    first = net.StreamServer(("127.0.0.1", 0), tagged(b"A"), reuse_port=True)
    first.start()
    second = net.StreamServer(first.address, tagged(b"B"), reuse_port=True)
    second.start()  # without SO_REUSEPORT this raises EADDRINUSE
    try:
        assert second.address == first.address
        answers = {roundtrip(first.address, b"?") for _ in range(40)}
        assert answers == {b"A", b"B"}  # the kernel spreads connections over both
    finally:
        first.stop(timeout=1)
        second.stop(timeout=1)


class FlakyListener(net.socket):
    """A listening socket whose accept fails with a chosen errno while told to."""

    __slots__ = ("errors", "calls")

    def accept(self):
        self.calls += 1
        if self.errors:
            raise OSError(self.errors.pop(0), os.strerror(errno.EMFILE))
        return super().accept()


def flaky_listener():
    lst = FlakyListener()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    lst.errors = []
    lst.calls = 0
    return lst


def test_accept_backs_off_on_emfile_until_a_connection_closes(dhaga_log):
    lst = flaky_listener()
    server = net.StreamServer(lst, echo, accept_backoff=30)  # only a close can end the wait
    server.start()
    try:
        first = net.create_connection(server.address, timeout=5)
        first.sendall(b"1")
        assert first.recv(10) == b"1"
        lst.errors = [errno.EMFILE] * 1000
        second = net.create_connection(server.address, timeout=5)  # queued in the backlog
        settle()  # would raise if the accept loop spun on the readable listener
        calls = lst.calls
        assert server.accept_errors == 1 and calls <= 3
        lst.errors = []
        first.close()  # a connection closes: the accept loop retries now, not in 30 s
        second.sendall(b"2")
        assert second.recv(10) == b"2"
        second.close()
    finally:
        server.stop(timeout=1)
    assert any("accept failed" in r.getMessage() for r in dhaga_log.records)


def test_accept_skips_aborted_connections():
    lst = flaky_listener()
    lst.errors = [errno.ECONNABORTED, errno.EPROTO]
    server = net.StreamServer(lst, echo)
    server.start()
    try:
        assert roundtrip(server.address) == b"ping"
        assert server.accept_errors == 0
    finally:
        server.stop(timeout=1)
