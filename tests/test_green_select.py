"""dhaga._monkey.green_select without patching: the green ``poll`` and ``select`` directly.

What these tests pin down is what kombu's event loop relies on (it polls once per message): a
wait leaves a green socket's own loop registration alone, and a socket that ``poll``/``select``
has just reported readable reads at once, without a trip through the loop.
"""

from __future__ import annotations

import select as stdselect

import pytest
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

import dhaga
from dhaga import net
from dhaga._io import fdwait as _fdwait
from dhaga._monkey import green_select

pytestmark = pytest.mark.usefixtures("each_loop")


def _short_read_pair() -> tuple[net.socket, net.socket]:
    """A connected green pair whose ``a`` waited once for data and last read short."""
    a, b = net.socketpair()
    reader = dhaga.spawn(a.recv, 100)  # waits: a's registration is made, and kept
    dhaga.sleep(0)
    b.sendall(b"x")
    assert reader.result(timeout=5) == b"x"  # 1 byte of 100 asked: a short read
    return a, b


def test_a_poll_wait_keeps_a_sockets_registration_and_drops_its_own():
    def main():
        a, b = _short_read_pair()
        c, d = net.socketpair()  # never waited on: only the poll registers it
        try:
            p = green_select.poll()
            p.register(a, stdselect.POLLIN)
            p.register(c.fileno(), stdselect.POLLIN)
            assert p.poll(50) == []  # parked on both, timed out
            # a's own registration is still there; the one the poll made for c is not.
            assert _fdwait._watchers[a.fileno()].r_on
            c_watcher = _fdwait._watchers.get(c.fileno())
            assert c_watcher is None or not c_watcher.r_on
        finally:
            for s in (a, b, c, d):
                s.close()

    dhaga.run(main)


@pytest.mark.parametrize("timeout", [None, 30.0])
@pytest.mark.parametrize("how", ["poll", "select"])
def test_a_socket_reported_readable_reads_without_a_trip_through_the_loop(how, timeout):
    def main():
        a, b = _short_read_pair()
        a.settimeout(timeout)  # a socket with a timeout waits first after a short read too
        try:
            b.sendall(b"more")
            if how == "poll":
                p = green_select.poll()
                p.register(a.fileno(), stdselect.POLLIN)
                assert p.poll(5000) == [(a.fileno(), stdselect.POLLIN)]
            else:
                assert green_select.select([a], [], [], 5) == ([a], [], [])
            ran = []
            dhaga.spawn(ran.append, "other")  # runnable: it would run if recv parked
            assert a.recv(100) == b"more"
            assert ran == []
            dhaga.sleep(0)
            assert ran == ["other"]
            # The hint is used once: the next short read waits for readiness as before.
            later = dhaga.spawn(a.recv, 100)
            dhaga.sleep(0)
            assert not later.done()
            b.sendall(b"last")
            assert later.result(timeout=5) == b"last"
        finally:
            a.close()
            b.close()

    dhaga.run(main)


def test_poll_follows_register_modify_and_unregister():
    def main():
        a, b = net.socketpair()
        try:
            p = green_select.poll()
            p.register(a.fileno(), stdselect.POLLIN)
            assert p.poll(0) == []
            p.modify(a.fileno(), stdselect.POLLOUT)
            assert p.poll(5000) == [(a.fileno(), stdselect.POLLOUT)]  # writable at once
            p.unregister(a.fileno())
            p.register(b.fileno(), stdselect.POLLIN)
            waiter = dhaga.spawn(p.poll, 5000)
            dhaga.sleep(0)
            assert not waiter.done()
            a.sendall(b"x")
            assert waiter.result(timeout=5) == [(b.fileno(), stdselect.POLLIN)]
        finally:
            a.close()
            b.close()

    dhaga.run(main)
