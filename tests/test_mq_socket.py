"""dhaga.mq sockets over inproc://: waiting, timeouts, closing, options, the Poller, proxy."""

from __future__ import annotations

import logging

import pytest
from mq_helpers import ep, make, pair  # noqa: F401 - fixture

import dhaga
from dhaga import mq
from dhaga.testing import settle

Timeout = dhaga.Timeout


# -- waiting, timeouts, closing ----------------------------------------------------------------


def test_send_with_no_peer_blocks_until_one_connects(make):
    push = make(mq.PUSH)
    name = push.bind(ep())
    with pytest.raises(Timeout):
        push.send(b"x", timeout=0.01)
    sender = dhaga.spawn(push.send, b"waited")
    settle()
    pull = make(mq.PULL)
    pull.connect(name)
    assert pull.recv() == b"waited"
    sender.result(timeout=1)


def test_rcvtimeo_and_sndtimeo_options(make):
    pull = make(mq.PULL, rcvtimeo=10)
    push = make(mq.PUSH, sndtimeo=0)
    with pytest.raises(Timeout):
        pull.recv()
    with pytest.raises(Timeout):
        push.send(b"x")
    pull.rcvtimeo = -1
    assert pull.rcvtimeo == -1


def test_many_receivers_on_one_socket_all_get_messages(make):
    pull, push = pair(make, mq.PULL, mq.PUSH)
    got = []
    readers = [dhaga.spawn(lambda: got.append(pull.recv())) for _ in range(5)]
    settle()
    for i in range(5):
        push.send(b"%d" % i)
    dhaga.joinall(readers, timeout=2, raise_error=True)
    assert sorted(got) == [b"%d" % i for i in range(5)]


def test_a_receiver_that_times_out_passes_its_wakeup_on(make):
    pull, push = pair(make, mq.PULL, mq.PUSH)
    impatient = dhaga.spawn(pull.recv, timeout=0.001)
    patient = dhaga.spawn(pull.recv)
    with pytest.raises(Timeout):
        impatient.result(timeout=1)
    push.send(b"x")
    assert patient.result(timeout=1) == b"x"


def test_killed_receiver_loses_nothing(make):
    pull, push = pair(make, mq.PULL, mq.PUSH)
    victim = dhaga.spawn(pull.recv)
    other = dhaga.spawn(pull.recv)
    settle()
    push.send(b"one")
    victim.kill()
    push.send(b"two")
    got = {other.result(timeout=1)}
    if not victim.killed():
        got.add(victim.result())
    else:
        got.add(pull.recv(timeout=1))
    assert got == {b"one", b"two"}


def test_close_wakes_waiters_and_later_calls_fail(make):
    pull = make(mq.PULL)
    waiter = dhaga.spawn(pull.recv)
    settle()
    pull.close()
    with pytest.raises(mq.SocketClosed):
        waiter.result(timeout=1)
    with pytest.raises(mq.SocketClosed):
        pull.recv()
    with pytest.raises(mq.SocketClosed):
        pull.bind(ep())
    assert pull.closed
    pull.close()  # twice is fine


def test_inproc_queued_messages_stay_readable_after_the_sender_closes(make):
    pull, push = pair(make, mq.PULL, mq.PUSH)
    push.send(b"last words")
    push.close()
    assert pull.recv(timeout=1) == b"last words"


def test_not_supported_operations(make):
    with pytest.raises(mq.NotSupported):
        make(mq.PUSH).recv()
    with pytest.raises(mq.NotSupported):
        make(mq.PUB).recv()
    with pytest.raises(mq.NotSupported):
        make(mq.PULL).send(b"x")
    with pytest.raises(mq.NotSupported):
        make(mq.SUB).send(b"x")
    with pytest.raises(mq.NotSupported):
        make(mq.PUSH).subscribe(b"x")


def test_incompatible_types_do_not_connect(make, dhaga_log):
    a = make(mq.PUSH)
    b = make(mq.PUSH)
    b.connect(a.bind(ep()))
    assert "cannot connect" in dhaga_log.text
    with pytest.raises(Timeout):
        b.send(b"x", timeout=0)


def test_inproc_name_in_use(make):
    name = ep()
    make(mq.PULL).bind(name)
    with pytest.raises(OSError):
        make(mq.PULL).bind(name)


def test_unbind_and_disconnect(make):
    pull = make(mq.PULL)
    name = pull.bind(ep())
    push = make(mq.PUSH)
    push.connect(name)
    push.disconnect(name)
    with pytest.raises(Timeout):
        push.send(b"x", timeout=0)
    with pytest.raises(ValueError):
        push.disconnect(name)
    pull.unbind(name)
    pull2 = make(mq.PULL)
    pull2.bind(name)  # the name is free again


# -- options -----------------------------------------------------------------------------------


def test_options_are_keywords_and_attributes():
    s = mq.Socket(mq.DEALER, sndhwm=5, identity=b"me", heartbeat_ivl=100)
    try:
        assert (s.sndhwm, s.routing_id, s.identity, s.heartbeat_ivl) == (5, b"me", b"me", 100)
        assert s.rcvhwm == 1000 and s.linger == -1 and s.reconnect_ivl == 100
        s.linger = 0
        assert s.linger == 0
        with pytest.raises(ValueError, match="sndhwm"):
            s.sndhwm = -1
        with pytest.raises(TypeError):
            s.rcvtimeo = 1.5
        with pytest.raises(ValueError):
            s.routing_id = b"\0reserved"
        assert s.kind == "DEALER" and "DEALER" in repr(s)
    finally:
        s.close()
    with pytest.raises(TypeError, match="unknown socket option"):
        mq.Socket(mq.PUSH, hwm=3)
    with pytest.raises(ValueError, match="unknown socket type"):
        mq.Socket("FOO")


@pytest.mark.parametrize("bad", ["inproc:/x", "udp://1.2.3.4:5", "tcp://", "tcp://host"])
def test_bad_endpoints(make, bad):
    with pytest.raises(ValueError):
        make(mq.PUSH).connect(bad)


# -- poller ------------------------------------------------------------------------------------


def test_poller_waits_for_any_socket(make):
    p1, push1 = pair(make, mq.PULL, mq.PUSH)
    p2, push2 = pair(make, mq.PULL, mq.PUSH)
    poller = mq.Poller()
    poller.register(p1, mq.POLLIN)
    poller.register(p2, mq.POLLIN)
    assert poller.poll(timeout=0.01) == []
    dhaga.spawn(push2.send, b"x")
    assert poller.poll(timeout=2) == [(p2, mq.POLLIN)]
    assert p2.recv() == b"x"
    poller.register(push1, mq.POLLOUT)
    assert dict(poller.poll(0)) == {push1: mq.POLLOUT}
    poller.unregister(push1)
    assert [s for s, _ in poller.sockets] == [p1, p2]


def test_poller_raises_when_a_socket_closes(make):
    pull = make(mq.PULL)
    poller = mq.Poller()
    poller.register(pull, mq.POLLIN)
    d = dhaga.spawn(poller.poll)
    settle()
    pull.close()
    with pytest.raises(mq.SocketClosed):
        d.result(timeout=1)


def test_poller_sees_only_wanted_subscriptions(make):
    pub, sub = pair(make, mq.PUB, mq.SUB)
    sub.subscribe(b"a")
    poller = mq.Poller()
    poller.register(sub, mq.POLLIN)
    pub.send(b"a1")
    sub.unsubscribe(b"a")  # the queued message no longer matches
    assert poller.poll(0) == []
    sub.subscribe(b"b")
    pub.send(b"b1")
    assert poller.poll(0) == [(sub, mq.POLLIN)]
    assert sub.recv() == b"b1"


def test_req_poll_ignores_a_reply_from_the_wrong_peer(make):
    req = make(mq.REQ, routing_id=b"me")
    name = req.bind(ep())
    asked, other = make(mq.ROUTER), make(mq.ROUTER)
    asked.connect(name)
    other.connect(name)
    req.send(b"q")
    assert asked.recv_multipart(timeout=5)[0] == b"me"
    other.send_multipart([b"me", b"", b"not asked"])
    poller = mq.Poller()
    poller.register(req, mq.POLLIN)
    assert poller.poll(0) == []
    asked.send_multipart([b"me", b"", b"answer"])
    assert poller.poll(1) == [(req, mq.POLLIN)]
    assert req.recv() == b"answer"


# -- proxy -------------------------------------------------------------------------------------


def test_router_dealer_proxy_serves_req_clients(make):
    frontend, backend = make(mq.ROUTER), make(mq.DEALER)
    front, back = frontend.bind(ep()), backend.bind(ep())
    device = dhaga.spawn(mq.proxy, frontend, backend)
    workers = []
    for w in range(2):
        rep = make(mq.REP)
        rep.connect(back)

        def work(rep=rep, w=w):
            while True:
                rep.send(rep.recv() + b"@%d" % w)

        workers.append(dhaga.spawn(work))
    clients = [make(mq.REQ) for _ in range(4)]
    for c in clients:
        c.connect(front)
    for i, c in enumerate(clients):
        c.send(b"req%d" % i)
    replies = [c.recv(timeout=2) for c in clients]
    assert [r.split(b"@")[0] for r in replies] == [b"req%d" % i for i in range(4)]
    assert {r.split(b"@")[1] for r in replies} == {b"0", b"1"}  # both workers served
    frontend.close(linger=0)
    device.result(timeout=2)
    for w in workers:
        w.kill()


def test_proxy_refuses_sockets_with_nothing_to_forward(make):
    with pytest.raises(ValueError):
        mq.proxy(make(mq.PUSH), make(mq.PUB))


def test_logger_is_under_dhaga():
    assert logging.getLogger("dhaga.mq").parent is logging.getLogger("dhaga")


def test_inproc_refuses_sockets_of_another_thread(make):
    import threading

    name = ep()
    make(mq.PULL).bind(name)
    errors = []

    def other_thread():
        push = mq.Socket(mq.PUSH)
        try:
            push.connect(name)
        except mq.NotSupported as exc:
            errors.append(exc)
        finally:
            push.close(linger=0)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(10)
    assert errors and "one OS thread" in str(errors[0])
