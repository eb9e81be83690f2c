"""dhaga.mq over tcp:// and ipc://: endpoints, every type over the wire, HWM, reconnection,
linger, heartbeats, and no leaked descriptors."""

from __future__ import annotations

import pytest
from mq_helpers import make, open_fds, recv_all, until  # noqa: F401 - fixture

import dhaga
from dhaga import mq
from dhaga.mq import transport
from dhaga.testing import live_workers, settle

Timeout = dhaga.Timeout
TCP = "tcp://127.0.0.1:*"


@pytest.fixture(params=["tcp", "ipc"])
def endpoint(request, tmp_path):
    """A bind endpoint on each stream transport."""
    return TCP if request.param == "tcp" else f"ipc://{tmp_path}/sock"


def dead_endpoint() -> str:
    """A tcp endpoint nobody listens on: bound on port 0, then closed."""
    pull = mq.Socket(mq.PULL)
    endpoint = pull.bind(TCP)
    pull.close(linger=0)
    return endpoint


def connected(make, bind_kind, connect_kind, endpoint=TCP, bind_opts=None, connect_opts=None):
    a = make(bind_kind, **(bind_opts or {}))
    b = make(connect_kind, **(connect_opts or {}))
    b.connect(a.bind(endpoint))
    return a, b


def test_bind_resolves_port_zero_and_star(make):
    for spec in ("tcp://127.0.0.1:*", "tcp://127.0.0.1:0"):
        actual = make(mq.PULL).bind(spec)
        host, port = actual[len("tcp://"):].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0


def test_ipc_star_makes_a_fresh_path_and_removes_it(make):
    import os

    pull = make(mq.PULL)
    actual = pull.bind("ipc://*")
    path = actual[len("ipc://"):]
    assert os.path.exists(path)
    pull.close(linger=0)
    assert not os.path.exists(path)


def test_ipc_abstract_namespace(make):
    pull, push = connected(make, mq.PULL, mq.PUSH, f"ipc://@dhaga-test-{id(make)}")
    push.send(b"abstract")
    assert pull.recv(timeout=5) == b"abstract"


def test_ipc_bind_replaces_a_stale_socket_file(make, tmp_path):
    import socket

    path = tmp_path / "stale"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()  # the file stays, as after a crash
    pull = make(mq.PULL)
    push = make(mq.PUSH)
    push.connect(pull.bind(f"ipc://{path}"))
    push.send(b"x")
    assert pull.recv(timeout=5) == b"x"


@pytest.mark.parametrize("bind_kind, connect_kind", [
    (mq.PULL, mq.PUSH), (mq.PUSH, mq.PULL), (mq.PAIR, mq.PAIR), (mq.DEALER, mq.DEALER),
])
def test_one_way_types_over_each_transport(make, endpoint, bind_kind, connect_kind):
    a, b = connected(make, bind_kind, connect_kind, endpoint)
    sender, receiver = (a, b) if bind_kind in (mq.PUSH, mq.PAIR, mq.DEALER) else (b, a)
    msgs = [[b"one"], [b"", b"empty-first"], [bytes(range(256))], [b"x" * (1 << 20), b"tail"]]
    for m in msgs:
        sender.send_multipart(m)
    assert recv_all(receiver, len(msgs)) == msgs


def test_req_rep_and_router_dealer_over_each_transport(make, endpoint):
    rep, req = connected(make, mq.REP, mq.REQ, endpoint)
    for i in range(3):
        req.send(b"q%d" % i)
        assert rep.recv(timeout=5) == b"q%d" % i
        rep.send(b"r%d" % i)
        assert req.recv(timeout=5) == b"r%d" % i
    router, dealer = connected(make, mq.ROUTER, mq.DEALER, endpoint,
                               connect_opts={"routing_id": b"dealer-1"})
    dealer.send(b"hello")
    assert router.recv_multipart(timeout=5) == [b"dealer-1", b"hello"]
    router.send_multipart([b"dealer-1", b"back"])
    assert dealer.recv(timeout=5) == b"back"


def test_router_connecting_to_router_over_tcp(make):
    server = make(mq.ROUTER, routing_id=b"server")
    client = make(mq.ROUTER, routing_id=b"client", router_mandatory=True)
    client.connect(server.bind(TCP))
    until(lambda: client._strategy.routes)  # a ROUTER can talk only once it knows the peer
    client.send_multipart([b"server", b"hi"])
    assert server.recv_multipart(timeout=5) == [b"client", b"hi"]


def test_pub_sub_filtering_over_each_transport(make, endpoint):
    pub, sub = connected(make, mq.PUB, mq.SUB, endpoint)
    sub.subscribe(b"w")
    until(lambda: pub._strategy.pipes and pub._strategy.pipes[0].subs)
    for t in (b"x1", b"w1", b"y", b"w2"):
        pub.send(t)
    assert [sub.recv(timeout=5), sub.recv(timeout=5)] == [b"w1", b"w2"]
    with pytest.raises(Timeout):
        sub.recv(timeout=0.05)


@pytest.mark.parametrize("minor", [1, 0])
def test_xpub_xsub_over_tcp_in_both_versions(make, minor):
    xpub, xsub = connected(make, mq.XPUB, mq.XSUB, bind_opts={"zmtp_minor": minor})
    xsub.send(b"\x01t")
    assert xpub.recv(timeout=5) == b"\x01t"
    xpub.send(b"t-msg")
    assert xsub.recv(timeout=5) == b"t-msg"
    xsub.send(b"\x00t")
    assert xpub.recv(timeout=5) == b"\x00t"


def test_queueing_before_the_connection_is_up(make, tmp_path):
    path = f"ipc://{tmp_path}/later"
    push = make(mq.PUSH, reconnect_ivl=10)
    push.connect(path)
    for i in range(5):
        push.send(b"%d" % i, timeout=0)
    pull = make(mq.PULL)
    pull.bind(path)
    assert [pull.recv(timeout=5) for _ in range(5)] == [b"%d" % i for i in range(5)]


def test_reconnect_after_the_peer_restarts(make):
    first = make(mq.PULL)
    endpoint = first.bind(TCP)
    push = make(mq.PUSH, reconnect_ivl=10)
    push.connect(endpoint)
    push.send(b"before")
    assert first.recv(timeout=5) == b"before"
    first.close(linger=0)
    until(lambda: not push._strategy.pipes[0].connected)
    push.send(b"while-down")  # queues in the persistent pipe
    second = make(mq.PULL)
    second.bind(endpoint)  # same port: the peer restarted
    assert second.recv(timeout=5) == b"while-down"
    push.send(b"after")
    assert second.recv(timeout=5) == b"after"


def test_sub_resubscribes_after_the_publisher_restarts(make):
    first = make(mq.PUB)
    endpoint = first.bind(TCP)
    sub = make(mq.SUB, reconnect_ivl=10)
    sub.connect(endpoint)
    sub.subscribe(b"k")
    first.close(linger=0)
    second = make(mq.PUB)
    second.bind(endpoint)
    until(lambda: second._strategy.pipes and second._strategy.pipes[0].subs)
    second.send(b"k-after-restart")
    assert sub.recv(timeout=5) == b"k-after-restart"


def test_reconnect_backoff_doubles_up_to_the_maximum(make, monkeypatch):
    delays = []

    def fake_sleep(seconds):
        delays.append(round(seconds * 1000))
        if len(delays) >= 6:
            raise dhaga.Killed  # enough: end the connect loop

    monkeypatch.setattr(transport, "sleep", fake_sleep)
    endpoint = dead_endpoint()  # every attempt is refused
    push = make(mq.PUSH, reconnect_ivl=10, reconnect_ivl_max=45)
    push.connect(endpoint)
    until(lambda: len(delays) >= 6)
    assert delays == [10, 20, 40, 45, 45, 45]


def test_reconnect_interval_without_backoff_has_jitter(make, monkeypatch):
    delays = []

    def fake_sleep(seconds):
        delays.append(seconds * 1000)
        if len(delays) >= 20:
            raise dhaga.Killed

    monkeypatch.setattr(transport, "sleep", fake_sleep)
    endpoint = dead_endpoint()
    push = make(mq.PUSH, reconnect_ivl=50)
    push.connect(endpoint)
    until(lambda: len(delays) >= 20)
    assert all(50 <= d < 100 for d in delays) and len(set(delays)) > 1


def test_no_reconnect_with_negative_interval(make):
    pull = make(mq.PULL)
    push = make(mq.PUSH, reconnect_ivl=-1)
    push.connect(pull.bind(TCP))
    push.send(b"x")
    assert pull.recv(timeout=5) == b"x"
    pull.close(linger=0)
    until(lambda: not push._strategy.pipes)  # the pipe ended for good


def test_push_blocks_at_the_hwm_over_tcp_and_loses_nothing(make):
    pull, push = connected(make, mq.PULL, mq.PUSH, bind_opts={"rcvhwm": 10},
                           connect_opts={"sndhwm": 10})
    sent = 0
    payload = b"p" * 1000
    with pytest.raises(Timeout):
        while sent < 1_000_000:
            push.send(b"%d:" % sent + payload, timeout=0.2)
            sent += 1
    assert 20 <= sent < 100_000  # the pipes filled, then the kernel buffers: send blocked
    got = [pull.recv(timeout=5).split(b":")[0] for _ in range(sent)]
    assert got == [b"%d" % i for i in range(sent)]


def test_pub_never_blocks_and_drops_for_a_slow_subscriber(make):
    pub, sub = connected(make, mq.PUB, mq.SUB, bind_opts={"sndhwm": 5},
                         connect_opts={"rcvhwm": 5})
    sub.subscribe(b"")
    until(lambda: pub._strategy.pipes and pub._strategy.pipes[0].subs)
    n = 20_000
    for i in range(n):
        pub.send(b"%06d" % i + b"." * 500, timeout=0)
    got = []
    try:
        while True:
            got.append(int(sub.recv(timeout=0.3)[:6]))
    except Timeout:
        pass
    assert 0 < len(got) < n and got == sorted(got)


def test_linger_delivers_queued_messages_on_close(make):
    pull = make(mq.PULL)
    endpoint = pull.bind(TCP)
    push = mq.Socket(mq.PUSH)
    push.connect(endpoint)
    for i in range(2000):
        push.send(b"%d" % i)
    received = dhaga.spawn(recv_all, pull, 2000)
    push.close()  # default linger: waits until everything went out
    assert len(received.result(timeout=10)) == 2000


def test_linger_waits_for_a_peer_still_connecting(make, tmp_path):
    endpoint = f"ipc://{tmp_path}/late"
    push = mq.Socket(mq.PUSH, reconnect_ivl=10)
    push.connect(endpoint)
    for i in range(3):
        push.send(b"%d" % i)
    closing = dhaga.spawn(push.close, 5000)
    settle()
    assert not closing.done()  # lingering: the messages have not gone anywhere yet
    pull = make(mq.PULL)
    pull.bind(endpoint)
    assert [pull.recv(timeout=5) for _ in range(3)] == [b"0", b"1", b"2"]
    closing.result(timeout=5)


def test_linger_zero_drops_and_returns_at_once(make):
    push = mq.Socket(mq.PUSH, linger=0)
    push.connect(dead_endpoint())  # nothing listens: the messages can never leave
    push.send(b"x")
    push.close()
    assert push.closed


def test_close_with_linger_limit_gives_up(make):
    push = mq.Socket(mq.PUSH)
    push.connect(dead_endpoint())
    push.send(b"x")
    with dhaga.timeout(5):
        push.close(linger=30)
    assert push.closed


def test_heartbeats_keep_a_quiet_connection_and_are_answered(make, dhaga_log):
    pull, push = connected(make, mq.PULL, mq.PUSH,
                           connect_opts={"heartbeat_ivl": 10, "heartbeat_timeout": 50})
    push.send(b"first")
    assert pull.recv(timeout=5) == b"first"
    session = next(iter(push._sessions))
    until(lambda: session.pongs >= 15)  # unanswered, the connection would drop after 50 ms
    assert session in push._sessions
    push.send(b"still-up")
    assert pull.recv(timeout=5) == b"still-up"
    assert "heartbeat" not in dhaga_log.text


def test_disconnect_and_unbind_over_tcp(make):
    pull = make(mq.PULL)
    endpoint = pull.bind(TCP)
    push = make(mq.PUSH)
    push.connect(endpoint)
    push.send(b"x")
    assert pull.recv(timeout=5) == b"x"
    push.disconnect(endpoint)
    with pytest.raises(Timeout):
        push.send(b"y", timeout=0)
    pull.unbind(endpoint)
    other = make(mq.PUSH, reconnect_ivl=10)
    other.connect(endpoint)
    other.send(b"z", timeout=0)  # queues: nobody accepts any more
    with pytest.raises(Timeout):
        pull.recv(timeout=0.05)


def test_no_descriptors_leak(make):
    dhaga.sleep(0)  # the loop and its own descriptors exist before the count
    before = open_fds()
    earlier = {id(g) for g in live_workers()}
    for _ in range(3):
        pull = mq.Socket(mq.PULL)
        push = mq.Socket(mq.PUSH)
        push.connect(pull.bind(TCP))
        dead = mq.Socket(mq.PUSH, reconnect_ivl=5)
        dead.connect(dead_endpoint())
        push.send(b"x")
        assert pull.recv(timeout=5) == b"x"
        for s in (pull, push, dead):
            s.close(linger=0)
        settle()
    until(lambda: open_fds() <= before, timeout=2)
    leftovers = [g.task.name for g in live_workers() if id(g) not in earlier]
    assert leftovers == []  # no accept loop, connect loop, session or writer left behind


def test_every_loop_carries_messages_and_round_trips(each_loop, make, endpoint):
    pull, push = connected(make, mq.PULL, mq.PUSH, endpoint)
    for i in range(1000):
        push.send(b"%d" % i)
    assert [pull.recv(timeout=5) for _ in range(1000)] == [b"%d" % i for i in range(1000)]
    rep, req = connected(make, mq.REP, mq.REQ, endpoint)

    def serve():
        while True:
            rep.send(rep.recv())

    server = dhaga.spawn(serve)
    for i in range(100):
        req.send(b"%d" % i)
        assert req.recv(timeout=5) == b"%d" % i
    server.kill()
