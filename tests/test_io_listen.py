"""dhaga._io.listen: binding, TCP_NODELAY, the accept loop and its EMFILE policy, for every server."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys

import pytest
from mq_helpers import make, until  # noqa: F401 - fixture
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

import dhaga
from dhaga import mq, net, rpc, web
from dhaga._io import listen
from dhaga.mq import transport
from dhaga.testing import settle

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


class FlakyListener(net.socket):
    """A listening socket whose accept fails with a chosen errno while told to."""

    __slots__ = ("errors", "calls")

    def accept(self):
        self.calls += 1
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, os.strerror(code))
        return super().accept()


def flaky(address=("127.0.0.1", 0)):
    """A FlakyListener bound to ``address`` and listening, with no errors queued yet."""
    lst = FlakyListener(socket.AF_INET)
    lst.errors, lst.calls = [], 0
    lst.bind(address)
    lst.listen(16)
    return lst


# ---------------------------------------------------------------------- bind
def test_bind_tcp_port_zero_is_green_listening_and_reuses_the_address():
    with listen.bind(("127.0.0.1", 0)) as lst:
        assert isinstance(lst, net.socket)
        host, port = lst.getsockname()
        assert host == "127.0.0.1" and port != 0
        assert lst.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert lst.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1


def test_bind_resolves_a_host_name_through_the_green_resolver(monkeypatch):
    asked = []

    def fake(host, port, family=0, type=0, proto=0, flags=0):
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(listen.dns, "getaddrinfo", fake)
    with listen.bind(("myhost.invalid", 0)) as lst:
        assert asked == ["myhost.invalid"] and lst.getsockname()[0] == "127.0.0.1"


def test_bind_unix_replaces_a_stale_socket_but_never_a_regular_file(tmp_path):
    path = str(tmp_path / "s.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays: a server that died
    with listen.bind(path) as lst:
        assert lst.getsockname() == path
    regular = tmp_path / "data"
    regular.write_text("keep me")
    with pytest.raises(OSError) as e:
        listen.bind(str(regular))
    assert e.value.errno == errno.EADDRINUSE and regular.read_text() == "keep me"


def test_bind_takes_a_plain_bound_socket_and_makes_it_green():
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    address = plain.getsockname()
    with listen.bind(plain) as lst:
        assert isinstance(lst, net.socket) and lst.getsockname() == address
        assert lst.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_create_server_behaves_as_the_standard_library():
    with net.create_server(("127.0.0.1", 0), backlog=5) as lst:
        assert isinstance(lst, net.socket) and lst.family == socket.AF_INET
    with pytest.raises(ValueError):
        net.create_server(("127.0.0.1", 0), dualstack_ipv6=True)


# ---------------------------------------------------------------------- the accept loop
def test_acceptor_sets_nodelay_and_hands_over_each_connection():
    got = []
    acc = listen.Acceptor(listen.bind(("127.0.0.1", 0)), lambda s, a: got.append((s, a)))
    acc.start()
    try:
        with socket.create_connection(acc.sock.getsockname()) as c:
            until(lambda: got)
            conn, addr = got[0]
            assert addr == c.getsockname()
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            conn.close()
    finally:
        acc.stop()
    assert acc.sock.fileno() < 0


def test_nodelay_is_set_on_connections_of_every_server(make):
    seen = {}

    def handler(sock, addr):
        seen["stream"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    with net.StreamServer(("127.0.0.1", 0), handler) as server:
        with socket.create_connection(server.address):
            until(lambda: "stream" in seen)
    srv = rpc.Server()
    srv.register("nop", lambda: None)
    srv.listen(("127.0.0.1", 0))
    with srv, rpc.Client(srv.address) as client:
        client.call("nop")
        conn = srv.connections[0]
        seen["rpc"] = conn._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    pull = make(mq.PULL)
    endpoint = pull.bind("tcp://127.0.0.1:*")
    push = make(mq.PUSH)
    push.connect(endpoint)
    push.send(b"x")
    assert pull.recv() == b"x"
    (listener,) = pull._endpoints[endpoint]
    (session,) = listener.sessions
    seen["mq"] = session.stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert set(seen) == {"stream", "rpc", "mq"} and all(v != 0 for v in seen.values())


def test_one_warning_per_episode_of_failures(dhaga_log, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(listen, "monotonic", lambda: clock[0])
    lst = flaky()
    accepted = []
    acc = listen.Acceptor(lst, lambda s, a: accepted.append(s), backoff=0.001, name="probe")
    clients = []

    def fail_with(*codes):
        """Queue failures, and a connection so that the parked accept loop runs into them."""
        lst.errors = list(codes)
        clients.append(socket.create_connection(lst.getsockname()))
        until(lambda: not lst.errors and len(accepted) == len(clients))

    acc.start()
    try:
        fail_with(*[errno.EMFILE] * 50)
        assert acc.accept_errors == 50 and acc.episodes == 1
        clock[0] += acc.episode_gap - 0.5  # close to the last failure: still the same episode
        fail_with(*[errno.ENFILE] * 5)
        assert acc.episodes == 1
        clock[0] += acc.episode_gap + 0.5  # quiet for longer than the gap: a new episode
        fail_with(*[errno.EMFILE] * 5, errno.EINVAL)
        assert acc.accept_errors == 61 and acc.episodes == 2
    finally:
        acc.stop()
        for s in accepted + clients:
            s.close()
    warnings = [r for r in dhaga_log.records
                if r.name == "dhaga.server" and r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert all("Too many open files" in r.getMessage() for r in warnings)


def test_aborted_connections_are_skipped_silently(dhaga_log):
    lst = flaky()
    lst.errors = [errno.ECONNABORTED, errno.EPROTO]
    acc = listen.Acceptor(lst, lambda s, a: s.close())
    acc.start()
    try:
        until(lambda: not lst.errors)
        assert acc.accept_errors == 0 and acc.episodes == 0
    finally:
        acc.stop()
    assert not [r for r in dhaga_log.records if r.levelno >= logging.WARNING]


def test_serve_forever_returns_after_stop():
    acc = listen.Acceptor(listen.bind(("127.0.0.1", 0)), lambda s, a: s.close())
    runner = dhaga.spawn(acc.serve_forever)
    settle()
    acc.stop()
    assert runner.join(5) and runner.result() is None
    with pytest.raises(RuntimeError):
        acc.start()


@pytest.mark.timeout(60)
def test_real_emfile_in_a_child_logs_once_per_episode():
    env = dict(os.environ, PYTHONPATH=SCRIPTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "listen_emfile.py"], cwd=SCRIPTS, env=env,
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["first"] == {"warnings": 1, "errors": out["first"]["errors"], "episodes": 1}
    assert out["first"]["errors"] >= 20
    assert out["warnings"] == 2 and out["episodes"] == 2 and out["errors"] >= 40
    assert out["emfile_in_message"] and out["accepted"] == 2


def test_mq_accept_loop_follows_the_same_policy(make, dhaga_log, monkeypatch):
    made = []

    def flaky_bind(address, **kw):
        made.append(flaky(address))
        return made[-1]

    monkeypatch.setattr(transport, "_bind_socket", flaky_bind)
    pull = make(mq.PULL)
    endpoint = pull.bind("tcp://127.0.0.1:*")
    (listener,) = pull._endpoints[endpoint]
    listener._acceptor.backoff = 0.001  # 100 failures in a fraction of a second
    lst = made[0]
    lst.errors = [errno.EMFILE] * 100
    push = make(mq.PUSH)
    push.connect(endpoint)
    until(lambda: not lst.errors)
    push.send(b"after")
    assert pull.recv() == b"after"
    warnings = [r for r in dhaga_log.records
                if r.name == "dhaga.mq" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "accept failed" in warnings[0].getMessage()


def test_web_server_uses_the_shared_listener(tmp_path):
    path = str(tmp_path / "web.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = web.WSGIServer(app, path)
    server.start()
    try:
        with net.socket(net.AF_UNIX) as c:
            c.connect(path)
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := c.recv(4096):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok")
    finally:
        server.stop(timeout=1)
    assert not os.path.exists(path)


def test_bind_ipv6_keeps_the_whole_address_and_create_server_is_v6_only_unless_asked():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        lst = listen.bind(("::1", 0, 0, 0))
    except OSError as e:  # IPv6 disabled on loopback
        pytest.skip(f"no IPv6 loopback: {e}")
    with lst:
        assert lst.family == socket.AF_INET6 and lst.getsockname()[0] == "::1"
    with net.create_server(("::1", 0), family=socket.AF_INET6) as v6only:
        assert v6only.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    with net.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as dual:
        assert dual.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
