"""dhaga.net sockets against the standard library's behaviour, on both event loops."""

from __future__ import annotations

import errno
import os
import socket as stdsocket
import tempfile
import threading

import pytest
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

import dhaga
from dhaga import net
from dhaga._io import fdwait as _fdwait
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")


def tcp_pair() -> tuple[net.socket, net.socket, net.socket]:
    """A listener and a connected (client, server) pair of green TCP sockets."""
    lst = net.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    cli = net.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    return lst, cli, srv


def close_all(*socks: stdsocket.socket) -> None:
    for s in socks:
        s.close()


def test_green_socket_is_a_stdlib_socket_and_nonblocking_underneath():
    s = net.socket()
    try:
        assert isinstance(s, stdsocket.socket)
        assert s.gettimeout() is None and s.getblocking() and s.timeout is None
        assert stdsocket.socket.__mro__[1].gettimeout(s) == 0.0  # the OS socket never blocks
        assert s.family == stdsocket.AF_INET and s.type == stdsocket.SOCK_STREAM
    finally:
        s.close()


def test_timeout_settings_mirror_the_stdlib():
    g, s = net.socket(), stdsocket.socket()
    try:
        for op, arg in [("settimeout", 1.5), ("setblocking", False), ("setblocking", True),
                        ("settimeout", 0), ("settimeout", None), ("settimeout", 3)]:
            getattr(g, op)(arg)
            getattr(s, op)(arg)
            assert (g.gettimeout(), g.getblocking(), g.timeout) == (s.gettimeout(), s.getblocking(), s.timeout)
        for bad, exc in [(-1, ValueError), ("1", TypeError), (float("nan"), ValueError)]:
            with pytest.raises(exc):
                s.settimeout(bad)
            with pytest.raises(exc):
                g.settimeout(bad)
    finally:
        close_all(g, s)


def test_default_timeout_applies_to_new_and_accepted_sockets():
    old = stdsocket.getdefaulttimeout()
    stdsocket.setdefaulttimeout(2.5)
    try:
        lst, cli, srv = tcp_pair()
        assert lst.gettimeout() == cli.gettimeout() == srv.gettimeout() == 2.5
        close_all(lst, cli, srv)
    finally:
        stdsocket.setdefaulttimeout(old)


def test_send_recv_roundtrip_and_concurrency_in_one_thread():
    lst, cli, srv = tcp_pair()
    got = []

    def reader():
        got.append(srv.recv(100))

    d = dhaga.spawn(reader)
    settle()
    assert not got and not d.done()  # parked, the loop free
    assert cli.send(b"ping") == 4
    d.join(5)
    assert got == [b"ping"]
    buf = bytearray(10)
    cli.sendall(b"hello")
    assert srv.recv_into(buf) == 5 and buf[:5] == b"hello"
    close_all(lst, cli, srv)


def test_sendall_large_payload_waits_for_the_reader():
    lst, cli, srv = tcp_pair()
    payload = os.urandom(4 * 1024 * 1024)  # far more than the socket buffers hold
    received = bytearray()

    def reader():
        while len(received) < len(payload):
            chunk = srv.recv(65536)
            if not chunk:
                break
            received.extend(chunk)

    d = dhaga.spawn(reader)
    cli.sendall(memoryview(payload))
    d.join(10)
    assert bytes(received) == payload
    close_all(lst, cli, srv)


def test_data_arriving_after_a_short_read_is_not_missed():
    a, b = net.socketpair()
    b.send(b"one")
    assert a.recv(100) == b"one"  # a short read: the next recv waits for readiness first
    b.send(b"two")  # ... but this is already there: it must come back at once
    assert a.recv(100) == b"two"
    buf = bytearray(100)
    b.send(b"three")
    assert a.recv_into(buf) == 5
    b.send(b"four")
    assert a.recv_into(buf) == 4 and buf[:4] == b"four"
    close_all(a, b)


def test_recv_timeout_raises_like_the_stdlib():
    a, b = net.socketpair()
    sa, sb = stdsocket.socketpair()
    try:
        a.settimeout(0.01)
        sa.settimeout(0.01)
        with pytest.raises(TimeoutError) as green:
            a.recv(10)
        with pytest.raises(TimeoutError) as std:
            sa.recv(10)
        assert type(green.value) is type(std.value) and str(green.value) == str(std.value) == "timed out"
        a.setblocking(False)
        sa.setblocking(False)
        with pytest.raises(BlockingIOError) as green_nb:
            a.recv(10)
        with pytest.raises(BlockingIOError) as std_nb:
            sa.recv(10)
        assert green_nb.value.errno == std_nb.value.errno == errno.EAGAIN
    finally:
        close_all(a, b, sa, sb)


def test_a_timed_read_after_a_timeout_waits_before_it_reads(monkeypatch):
    # A timed-out read means the buffer was empty: the next one waits for the loop to report
    # data instead of asking the kernel first (which would answer EAGAIN), and still gets
    # data that came in between, and data already there when it is called.
    from dhaga._io import greensocket

    calls = []
    real = greensocket._recv
    monkeypatch.setattr(greensocket, "_recv", lambda *a: calls.append(1) or real(*a))
    a, b = net.socketpair()
    try:
        a.settimeout(0.02)
        with pytest.raises(TimeoutError):
            a.recv(10)
        assert len(calls) == 1  # the first read asked the kernel: EAGAIN, then the wait
        with pytest.raises(TimeoutError):
            a.recv(10)
        assert len(calls) == 1  # this one waited first and timed out without a read
        b.sendall(b"late")  # sent while nobody reads: the next poll reports it
        assert a.recv(10) == b"late"
        assert len(calls) == 2
        b.sendall(b"x" * 10)  # a full read: the buffer may hold more, so the next one reads first
        assert a.recv(10) == b"x" * 10
        b.sendall(b"more")
        assert a.recv(10) == b"more" and len(calls) == 4
        buf = bytearray(10)
        with pytest.raises(TimeoutError):
            a.recv_into(buf)  # after a short read: waits first, times out
        b.sendall(b"into")
        assert a.recv_into(buf) == 4 and bytes(buf[:4]) == b"into"
    finally:
        close_all(a, b)


def test_a_timed_read_waiting_first_is_bounded_by_its_timeout():
    a, b = net.socketpair()
    try:
        a.settimeout(0.05)
        with pytest.raises(TimeoutError):
            a.recv(1)

        d = dhaga.spawn(b.sendall, b"!")  # runs once the read below has parked
        assert a.recv(1) == b"!"  # woken by the data, inside the timeout
        d.join()
        a.settimeout(None)
        b.sendall(b"?")
        assert a.recv(1) == b"?"  # a blocking read after the timed ones
    finally:
        close_all(a, b)


def test_accept_timeout_and_nonblocking():
    lst = net.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    try:
        lst.settimeout(0.01)
        with pytest.raises(TimeoutError, match="timed out"):
            lst.accept()
        lst.setblocking(False)
        with pytest.raises(BlockingIOError):
            lst.accept()
    finally:
        lst.close()


def test_accept_parks_until_a_client_connects():
    lst = net.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    accepted = dhaga.spawn(lst.accept)
    settle()
    assert not accepted.done()
    cli = net.socket()
    cli.connect(lst.getsockname())
    conn, addr = accepted.result(5)
    assert isinstance(conn, net.socket) and addr == cli.getsockname()
    close_all(lst, cli, conn)


def test_connect_errors_match_the_stdlib():
    probe = stdsocket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    g, s = net.socket(), stdsocket.socket()
    with pytest.raises(ConnectionRefusedError) as green:
        g.connect(("127.0.0.1", port))
    with pytest.raises(ConnectionRefusedError) as std:
        s.connect(("127.0.0.1", port))
    assert green.value.errno == std.value.errno == errno.ECONNREFUSED
    close_all(g, s)
    g, s = net.socket(), stdsocket.socket()
    assert g.connect_ex(("127.0.0.1", port)) == s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
    close_all(g, s)


def test_connect_timeout_against_a_full_backlog():
    lst = stdsocket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    fillers = []
    for _ in range(4):  # fill the accept queue: further SYNs are dropped, connect hangs
        f = stdsocket.socket()
        f.setblocking(False)
        f.connect_ex(lst.getsockname())
        fillers.append(f)
    g = net.socket()
    g.settimeout(0.05)
    try:
        with pytest.raises(TimeoutError, match="timed out"):
            g.connect(lst.getsockname())
        g2 = net.socket()
        g2.settimeout(0.05)
        assert g2.connect_ex(lst.getsockname()) == errno.EWOULDBLOCK  # as the stdlib returns
        g2.close()
        nb = net.socket()
        nb.setblocking(False)
        with pytest.raises(BlockingIOError) as e:
            nb.connect(lst.getsockname())
        assert e.value.errno == errno.EINPROGRESS
        nb.close()
    finally:
        close_all(g, lst, *fillers)


def test_udp_sendto_recvfrom_and_timeout():
    a, b = net.socket(net.AF_INET, net.SOCK_DGRAM), net.socket(net.AF_INET, net.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    try:
        got = dhaga.spawn(b.recvfrom, 100)
        settle()
        assert a.sendto(b"datagram", b.getsockname()) == 8
        assert got.result(5) == (b"datagram", a.getsockname())
        buf = bytearray(16)
        a.sendto(b"into", 0, b.getsockname())
        assert b.recvfrom_into(buf) == (4, a.getsockname()) and buf[:4] == b"into"
        b.settimeout(0.01)
        with pytest.raises(TimeoutError):
            b.recvfrom(10)
    finally:
        close_all(a, b)


def test_unix_stream_server_and_fd_passing():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s")
        lst = net.socket(net.AF_UNIX, net.SOCK_STREAM)
        lst.bind(path)
        lst.listen(1)
        cli = net.socket(net.AF_UNIX, net.SOCK_STREAM)
        cli.connect(path)
        srv, _ = lst.accept()
        r, w = os.pipe()
        try:
            got = dhaga.spawn(srv.recvmsg, 10, stdsocket.CMSG_SPACE(4))
            settle()
            cli.sendmsg([b"fd"], [(stdsocket.SOL_SOCKET, stdsocket.SCM_RIGHTS, w.to_bytes(4, "little"))])
            data, anc, _flags, _addr = got.result(5)
            assert data == b"fd" and anc[0][1] == stdsocket.SCM_RIGHTS
            passed = int.from_bytes(anc[0][2][:4], "little")
            os.write(passed, b"x")
            os.close(passed)
            assert os.read(r, 1) == b"x"
        finally:
            os.close(r)
            os.close(w)
            close_all(lst, cli, srv)


def test_makefile_readline_and_write():
    lst, cli, srv = tcp_pair()
    rf = srv.makefile("rb")
    wf = cli.makefile("wb")
    line = dhaga.spawn(rf.readline)
    settle()
    wf.write(b"first line\nsecond")
    wf.flush()
    assert line.result(5) == b"first line\n"
    wf.close()
    cli.shutdown(net.SHUT_WR)
    assert rf.read() == b"second"  # read to EOF: the peer's shutdown ends it
    rf.close()
    close_all(lst, cli, srv)


def test_makefile_timeout_is_a_timeouterror():
    a, b = net.socketpair()
    a.settimeout(0.01)
    f = a.makefile("rb")
    with pytest.raises(TimeoutError):
        f.read(1)
    f.close()
    close_all(a, b)


def test_shutdown_wakes_a_reader_with_eof():
    lst, cli, srv = tcp_pair()
    got = dhaga.spawn(srv.recv, 10)
    settle()
    cli.shutdown(net.SHUT_WR)
    assert got.result(5) == b""
    close_all(lst, cli, srv)


@pytest.mark.parametrize("op", ["recv", "accept", "sendall"])
def test_close_wakes_a_waiter_with_ebadf(op):
    lst, cli, srv = tcp_pair()
    if op == "recv":
        d = dhaga.spawn(srv.recv, 10)
        victim = srv
    elif op == "accept":
        d = dhaga.spawn(lst.accept)
        victim = lst
    else:
        d = dhaga.spawn(srv.sendall, b"x" * (16 * 1024 * 1024))  # fills the buffers, then waits
        victim = srv
    settle()
    assert not d.done()
    victim.close()
    with pytest.raises(OSError) as e:
        d.result(5)
    # the standard library's error for an operation on a closed socket
    std = stdsocket.socket()
    std.close()
    with pytest.raises(OSError) as std_e:
        std.recv(1)
    assert e.value.errno == std_e.value.errno == errno.EBADF
    assert victim.fileno() == -1
    close_all(lst, cli, srv)


def test_two_readers_on_one_socket_is_an_error():
    a, b = net.socketpair()
    first = dhaga.spawn(a.recv, 10)
    settle()
    with pytest.raises(net.ConcurrentUseError, match="already waiting to read"):
        a.recv(10)
    b.send(b"!")
    assert first.result(5) == b"!"
    close_all(a, b)


def test_sendfile_sends_a_file_green():
    lst, cli, srv = tcp_pair()
    data = os.urandom(3 * 1024 * 1024)
    received = bytearray()

    def reader():
        while len(received) < len(data):
            chunk = srv.recv(65536)
            if not chunk:
                break
            received.extend(chunk)

    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        d = dhaga.spawn(reader)
        cli.settimeout(10)
        assert cli.sendfile(f) == len(data)
        assert f.tell() == len(data)
        d.join(10)
    assert bytes(received) == data
    close_all(lst, cli, srv)


def test_dup_detach_fromfd_keep_the_class_and_timeout():
    a, b = net.socketpair()
    a.settimeout(1.5)
    c = a.dup()
    assert isinstance(c, net.socket) and c.gettimeout() == 1.5
    d = net.fromfd(b.fileno(), net.AF_UNIX, net.SOCK_STREAM)
    assert isinstance(d, net.socket)
    d.send(b"via dup")
    assert c.recv(10) == b"via dup"
    fd = c.detach()
    assert c.fileno() == -1
    os.close(fd)
    close_all(a, b, c, d)


def test_top_level_recv_drives_the_loop():
    a, b = net.socketpair()
    dhaga.spawn(b.send, b"from a dhaga")
    assert a.recv(100) == b"from a dhaga"  # no dhaga here: the call runs the loop
    close_all(a, b)


def test_blocking_in_a_coroutine_raises_blocking_error():
    a, b = net.socketpair()

    async def coro():
        with pytest.raises(dhaga.BlockingError):
            a.recv(1)
        return "checked"

    assert dhaga.wait(coro(), timeout=5) == "checked"
    close_all(a, b)


class CountingLoop:
    """Stands in for a watcher's loop, counting (un)registrations."""

    def __init__(self, loop):
        self.loop = loop
        self.calls = []

    def __getattr__(self, name):
        attr = getattr(self.loop, name)
        if name in ("add_reader", "remove_reader", "add_writer", "remove_writer"):
            def counted(*args):
                self.calls.append(name)
                return attr(*args)
            return counted
        return attr


def test_one_registration_per_fd_across_many_waits():
    a, b = net.socketpair()
    first = dhaga.spawn(a.recv, 10)
    settle()  # a's watcher exists, registered once
    watcher = _fdwait._watchers[a.fileno()]
    watcher.loop = counting = CountingLoop(watcher.loop)

    def echo():
        for _ in range(200):
            a.send(a.recv(10))

    b.send(b"x")
    assert first.result(5) == b"x"
    d = dhaga.spawn(echo)
    for _ in range(200):
        b.send(b"y")
        assert b.recv(10) == b"y"
    d.join(5)
    assert len(counting.calls) <= 2, counting.calls  # not one per wait
    close_all(a, b)


def test_idle_registration_is_dropped_when_nobody_waits():
    a, b = net.socketpair()
    d = dhaga.spawn(a.recv, 10)
    settle()
    watcher = _fdwait._watchers[a.fileno()]
    assert watcher.r_on
    b.send(b"12345")
    assert d.result(5) == b"12345"
    b.send(b"unread")  # readable, nobody reading: the loop must not spin on it
    settle()
    for _ in range(100):  # a few loop iterations: the poll reports it, nobody is waiting
        if not watcher.r_on:
            break
        dhaga.sleep(0)
    assert not watcher.r_on
    close_all(a, b)


def test_wait_readable_writable_on_raw_fds():
    r, w = os.pipe()
    try:
        with pytest.raises(dhaga.Timeout):
            net.wait_readable(r, timeout=0.01)
        net.wait_writable(w, timeout=1)
        d = dhaga.spawn(net.wait_readable, r, 5)
        settle()
        assert not d.done()
        os.write(w, b"x")
        d.result(5)
        watcher = _fdwait._watchers.get(r)
        assert watcher is None or not watcher.r_on  # foreign fds are not left registered
    finally:
        net.notify_close(r)
        net.notify_close(w)
        os.close(r)
        os.close(w)


def test_notify_close_wakes_a_raw_fd_waiter():
    r, w = os.pipe()
    d = dhaga.spawn(net.wait_readable, r)
    settle()
    net.notify_close(r)
    with pytest.raises(OSError) as e:
        d.result(5)
    assert e.value.errno == errno.EBADF
    os.close(r)
    os.close(w)


def test_getaddrinfo_numeric_and_hosts_file_match_the_stdlib():
    assert net.getaddrinfo("127.0.0.1", 80, 0, net.SOCK_STREAM) == \
        stdsocket.getaddrinfo("127.0.0.1", 80, 0, net.SOCK_STREAM)
    names = []
    with open("/etc/hosts") as f:
        for line in f:
            parts = line.split("#")[0].split()
            names.extend(parts[1:])
    if not names:
        pytest.skip("/etc/hosts names nothing")
    name = names[0]
    assert net.getaddrinfo(name, 80, 0, net.SOCK_STREAM) == stdsocket.getaddrinfo(name, 80, 0, net.SOCK_STREAM)
    assert net.gethostbyname(name) == stdsocket.gethostbyname(name)
    with pytest.raises(net.gaierror):
        net.getaddrinfo("no-such-host.invalid", 80)


def test_name_resolution_does_not_block_the_loop(monkeypatch):
    from dhaga._io import dns as _dns

    release = threading.Event()

    def slow_resolver(*args):
        assert release.wait(10), "the loop was blocked while resolving"
        return [(net.AF_INET, net.SOCK_STREAM, 6, "", ("127.0.0.1", args[1]))]

    monkeypatch.setattr(_dns, "_std_getaddrinfo", slow_resolver)
    resolving = dhaga.spawn(net.getaddrinfo, "some.name.example", 80)
    releaser = dhaga.spawn(release.set)  # can only run if the loop is free
    releaser.join(5)
    assert resolving.result(5)[0][4] == ("127.0.0.1", 80)


def test_connect_resolves_names_green(monkeypatch):
    from dhaga._io import dns as _dns

    lst = net.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    seen = []

    def resolver(host, port, *args):
        seen.append(host)
        return [(net.AF_INET, net.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(_dns, "_std_getaddrinfo", resolver)
    c = net.create_connection(("service.example", lst.getsockname()[1]), timeout=5)
    c2 = net.socket()
    c2.connect(("other.example", lst.getsockname()[1]))
    assert seen == ["service.example", "other.example"]
    close_all(c, c2, lst)
