"""dhaga.mq socket types over inproc://: each type's routing rules, state machines, HWMs."""

from __future__ import annotations

import pytest
from mq_helpers import ep, make, pair, recv_all  # noqa: F401 - fixture

import dhaga
from dhaga import mq
from dhaga.testing import settle

Timeout = dhaga.Timeout


# -- push/pull ---------------------------------------------------------------------------------


def test_push_round_robins_over_its_peers(make):
    push = make(mq.PUSH)
    name = push.bind(ep())
    pulls = [make(mq.PULL) for _ in range(3)]
    for p in pulls:
        p.connect(name)
    for i in range(9):
        push.send(b"%d" % i)
    got = [[p.recv() for _ in range(3)] for p in pulls]
    assert got == [[b"0", b"3", b"6"], [b"1", b"4", b"7"], [b"2", b"5", b"8"]]


def test_pull_fair_queues_its_peers(make):
    pull = make(mq.PULL)
    name = pull.bind(ep())
    a, b = make(mq.PUSH), make(mq.PUSH)
    a.connect(name)
    b.connect(name)
    for i in range(3):
        a.send(b"a%d" % i)
    for i in range(3):
        b.send(b"b%d" % i)
    assert [pull.recv() for _ in range(6)] == [b"a0", b"b0", b"a1", b"b1", b"a2", b"b2"]


def test_multipart_and_empty_frames_survive(make):
    pull, push = pair(make, mq.PULL, mq.PUSH)
    msgs = [[b""], [b"", b""], [b"a", b"", b"c"], [bytes(range(256))]]
    for m in msgs:
        push.send_multipart(m)
    assert recv_all(pull, len(msgs)) == msgs


def test_send_more_and_rcvmore(make):
    pull, push = pair(make, mq.PULL, mq.PUSH)
    push.send(b"1", more=True)
    push.send(bytearray(b"2"), more=True)
    push.send(memoryview(b"3"))
    assert pull.recv() == b"1" and pull.rcvmore
    assert pull.recv_multipart() == [b"2", b"3"]  # the rest of the message
    assert not pull.rcvmore


def test_str_frames_are_refused(make):
    push = make(mq.PUSH)
    with pytest.raises(TypeError, match="encode"):
        push.send("text")


def test_send_string_and_recv_string(make):
    pull, push = pair(make, mq.PULL, mq.PUSH)
    push.send_string("héllo")
    assert pull.recv_string() == "héllo"


# -- req/rep -----------------------------------------------------------------------------------


def test_req_adds_the_delimiter_and_takes_the_reply(make):
    router, req = pair(make, mq.ROUTER, mq.REQ, b_opts={"routing_id": b"client"})
    req.send_multipart([b"q1", b"q2"])
    assert router.recv_multipart() == [b"client", b"", b"q1", b"q2"]
    router.send_multipart([b"client", b"", b"r"])
    assert req.recv_multipart() == [b"r"]


def test_req_enforces_alternation(make):
    router, req = pair(make, mq.ROUTER, mq.REQ)
    with pytest.raises(mq.BadState):
        req.recv(timeout=0)
    req.send(b"q")
    with pytest.raises(mq.BadState):
        req.send(b"again")
    ident = router.recv_multipart()[0]
    router.send_multipart([ident, b"", b"r"])
    assert req.recv() == b"r"
    req.send(b"q2")  # allowed again


def test_req_drops_replies_without_delimiter(make):
    router, req = pair(make, mq.ROUTER, mq.REQ)
    req.send(b"q")
    ident = router.recv_multipart()[0]
    router.send_multipart([ident, b"no-delimiter"])
    with pytest.raises(Timeout):
        req.recv(timeout=0.05)
    router.send_multipart([ident, b"", b"good"])
    assert req.recv() == b"good"


def test_req_round_robins_and_accepts_only_the_asked_peer(make):
    req = make(mq.REQ, routing_id=b"client")
    name = req.bind(ep())
    servers = [make(mq.ROUTER), make(mq.ROUTER)]
    for s in servers:
        s.connect(name)
    req.send(b"first")
    assert servers[0].recv_multipart(timeout=1) == [b"client", b"", b"first"]
    servers[1].send_multipart([b"client", b"", b"not-asked"])  # from the wrong peer: dropped
    servers[0].send_multipart([b"client", b"", b"answer"])
    assert req.recv(timeout=1) == b"answer"
    req.send(b"second")
    assert servers[1].recv_multipart(timeout=1) == [b"client", b"", b"second"]


def test_rep_keeps_the_envelope(make):
    rep, dealer = pair(make, mq.REP, mq.DEALER)
    dealer.send_multipart([b"hop1", b"hop2", b"", b"body", b"more"])
    assert rep.recv_multipart() == [b"body", b"more"]
    rep.send(b"reply")
    assert dealer.recv_multipart() == [b"hop1", b"hop2", b"", b"reply"]


def test_rep_enforces_alternation_and_drops_malformed_requests(make):
    rep, dealer = pair(make, mq.REP, mq.DEALER)
    with pytest.raises(mq.BadState):
        rep.send(b"x")
    dealer.send_multipart([b"no-delimiter"])
    dealer.send_multipart([b""])  # no body
    dealer.send_multipart([b"", b"ok"])
    assert rep.recv() == b"ok"
    with pytest.raises(mq.BadState):
        rep.recv(timeout=0)
    rep.send(b"done")
    assert dealer.recv_multipart() == [b"", b"done"]


def test_req_rep_between_dhagas(make):
    rep, req = pair(make, mq.REP, mq.REQ)

    def server():
        for _ in range(50):
            rep.send(rep.recv() * 2)

    d = dhaga.spawn(server)
    for i in range(50):
        req.send(b"%d" % i)
        assert req.recv() == b"%d%d" % (i, i)
    d.result(timeout=5)


# -- dealer/router -----------------------------------------------------------------------------


def test_router_routes_by_identity(make):
    router = make(mq.ROUTER)
    name = router.bind(ep())
    a = make(mq.DEALER, routing_id=b"A")
    b = make(mq.DEALER, routing_id=b"B")
    a.connect(name)
    b.connect(name)
    a.send(b"from-a")
    b.send(b"from-b")
    got = sorted(router.recv_multipart() for _ in range(2))
    assert got == [[b"A", b"from-a"], [b"B", b"from-b"]]
    router.send_multipart([b"B", b"to-b"])
    router.send_multipart([b"A", b"to-a", b""])
    assert a.recv_multipart() == [b"to-a", b""]
    assert b.recv_multipart() == [b"to-b"]


def test_router_generates_identities(make):
    router = make(mq.ROUTER)
    name = router.bind(ep())
    dealers = [make(mq.DEALER) for _ in range(3)]
    for d in dealers:
        d.connect(name)
        d.send(b"hi")
    ids = [router.recv_multipart()[0] for _ in dealers]
    assert len(set(ids)) == 3
    assert all(len(i) == 5 and i[0] == 0 for i in ids)
    router.send_multipart([ids[1], b"you"])
    assert dealers[1].recv() == b"you"


def test_router_refuses_a_second_peer_with_the_same_identity(make, dhaga_log):
    router = make(mq.ROUTER)
    name = router.bind(ep())
    first = make(mq.DEALER, routing_id=b"same")
    second = make(mq.DEALER, routing_id=b"same")
    first.connect(name)
    second.connect(name)
    assert "refused" in dhaga_log.text
    router.send_multipart([b"same", b"x"])
    assert first.recv(timeout=1) == b"x"
    with pytest.raises(Timeout):
        second.recv(timeout=0.02)


def test_router_drops_unroutable_or_raises_with_mandatory(make):
    router = make(mq.ROUTER)
    router.send_multipart([b"nobody", b"x"])  # silently dropped
    router.router_mandatory = True
    with pytest.raises(mq.HostUnreachable) as info:
        router.send_multipart([b"nobody", b"x"])
    assert info.value.routing_id == b"nobody"


def test_router_to_router(make):
    a = make(mq.ROUTER, routing_id=b"server")
    b = make(mq.ROUTER, routing_id=b"client")
    b.connect(a.bind(ep()))
    b.send_multipart([b"server", b"hello"])
    assert a.recv_multipart() == [b"client", b"hello"]
    a.send_multipart([b"client", b"back"])
    assert b.recv_multipart() == [b"server", b"back"]


def test_dealer_to_dealer_both_ways(make):
    a, b = pair(make, mq.DEALER, mq.DEALER)
    a.send(b"1")
    b.send(b"2")
    assert (b.recv(), a.recv()) == (b"1", b"2")


# -- pair --------------------------------------------------------------------------------------


def test_pair_has_exactly_one_peer(make, dhaga_log):
    a, b = pair(make, mq.PAIR, mq.PAIR)
    c = make(mq.PAIR)
    c.connect(a.last_endpoint)
    assert "refused" in dhaga_log.text
    a.send(b"to-b")
    assert b.recv() == b"to-b"
    b.send(b"to-a")
    assert a.recv() == b"to-a"
    with pytest.raises(Timeout):
        c.recv(timeout=0.02)


# -- pub/sub -----------------------------------------------------------------------------------


def test_pub_filters_by_prefix(make):
    pub = make(mq.PUB)
    name = pub.bind(ep())
    s_a, s_all = make(mq.SUB), make(mq.SUB)
    for s in (s_a, s_all):
        s.connect(name)
    s_a.subscribe(b"a")
    s_all.subscribe(b"")
    for t in (b"a1", b"b1", b"ab", b"", b"a"):
        pub.send_multipart([t, b"body"])
    assert [s_a.recv_multipart()[0] for _ in range(3)] == [b"a1", b"ab", b"a"]
    assert [s_all.recv_multipart()[0] for _ in range(5)] == [b"a1", b"b1", b"ab", b"", b"a"]
    with pytest.raises(Timeout):
        s_a.recv(timeout=0)


def test_pub_sends_nothing_to_a_sub_without_subscriptions(make):
    pub, sub = pair(make, mq.PUB, mq.SUB)
    pub.send(b"x")
    assert len(sub._strategy.pipes[0].inc.q) == 0  # filtered at the publisher


def test_subscriptions_count_and_unsubscribe(make):
    pub, sub = pair(make, mq.PUB, mq.SUB)
    sub.subscribe(b"t")
    sub.subscribe(b"t")
    sub.unsubscribe(b"t")
    pub.send(b"t1")
    assert sub.recv() == b"t1"
    sub.unsubscribe(b"t")
    pub.send(b"t2")
    with pytest.raises(Timeout):
        sub.recv(timeout=0.02)


def test_sub_filters_again_on_receipt(make):
    pub, sub = pair(make, mq.PUB, mq.SUB)
    sub.subscribe(b"a")
    pub.send(b"a-queued")  # already in the SUB's queue when it unsubscribes
    sub.unsubscribe(b"a")
    sub.subscribe(b"b")
    pub.send(b"b-1")
    assert sub.recv() == b"b-1"


def test_sub_connected_before_bind_sends_its_subscriptions(make):
    name = ep()
    sub = make(mq.SUB)
    sub.subscribe(b"x")
    sub.connect(name)
    pub = make(mq.PUB)
    pub.bind(name)
    pub.send(b"y")
    pub.send(b"x1")
    assert sub.recv() == b"x1"


def test_xpub_sees_subscriptions(make):
    xpub = make(mq.XPUB)
    name = xpub.bind(ep())
    s1, s2 = make(mq.SUB), make(mq.SUB)
    s1.connect(name)
    s2.connect(name)
    s1.subscribe(b"news")
    assert xpub.recv() == b"\x01news"
    s2.subscribe(b"news")  # not new: not reported
    with pytest.raises(Timeout):
        xpub.recv(timeout=0)
    s1.unsubscribe(b"news")
    with pytest.raises(Timeout):
        xpub.recv(timeout=0)
    s2.close(linger=0)  # the last subscriber leaving cancels
    assert xpub.recv(timeout=1) == b"\x00news"


def test_xpub_verbose_reports_every_subscription(make):
    xpub = make(mq.XPUB, xpub_verbose=True)
    name = xpub.bind(ep())
    s1, s2 = make(mq.SUB), make(mq.SUB)
    s1.connect(name)
    s2.connect(name)
    s1.subscribe(b"t")
    s2.subscribe(b"t")
    assert [xpub.recv(), xpub.recv()] == [b"\x01t", b"\x01t"]


def test_xsub_subscribes_by_message_and_sends_upstream(make):
    xpub, xsub = pair(make, mq.XPUB, mq.XSUB)
    xsub.send(b"\x01top")
    assert xpub.recv() == b"\x01top"
    xsub.send_multipart([b"upstream", b"data"])
    assert xpub.recv_multipart() == [b"upstream", b"data"]
    xpub.send(b"top-1")
    xpub.send(b"other")
    assert xsub.recv() == b"top-1"
    xsub.send(b"\x00top")
    assert xpub.recv() == b"\x00top"


def test_xsub_xpub_proxy_forwards_subscriptions_and_messages(make):
    pub = make(mq.PUB)
    xsub = make(mq.XSUB)
    xsub.connect(pub.bind(ep()))
    xpub = make(mq.XPUB)
    sub = make(mq.SUB)
    sub.connect(xpub.bind(ep()))
    capture = make(mq.PULL)
    cap_push = make(mq.PUSH)
    cap_push.connect(capture.bind(ep()))
    device = dhaga.spawn(mq.proxy, xpub, xsub, cap_push)
    sub.subscribe(b"k")
    assert capture.recv(timeout=2) == b"\x01k"  # the subscription went through the proxy
    pub.send(b"z")
    pub.send(b"k1")
    assert sub.recv(timeout=2) == b"k1"
    assert capture.recv(timeout=2) == b"k1"
    xsub.close(linger=0)
    assert device.result(timeout=2) is None  # the proxy ends when a socket closes


# -- high-water marks --------------------------------------------------------------------------


def test_push_blocks_at_the_hwm_and_resumes(make):
    pull, push = pair(make, mq.PULL, mq.PUSH, a_opts={"rcvhwm": 3}, b_opts={"sndhwm": 2})
    for i in range(5):  # inproc: the sender's HWM plus the receiver's
        push.send(b"%d" % i, timeout=0)
    with pytest.raises(Timeout):
        push.send(b"5", timeout=0)
    sender = dhaga.spawn(lambda: [push.send(b"%d" % i) for i in range(5, 10)])
    settle()
    assert not sender.done()
    assert [pull.recv() for _ in range(10)] == [b"%d" % i for i in range(10)]
    sender.result(timeout=1)


def test_push_skips_a_full_peer(make):
    push = make(mq.PUSH, sndhwm=1)
    name = push.bind(ep())
    slow, fast = make(mq.PULL, rcvhwm=1), make(mq.PULL, rcvhwm=1)
    slow.connect(name)
    fast.connect(name)
    for i in range(4):
        push.send(b"%d" % i, timeout=0)  # 2 per peer fill both
    for i in range(2):
        assert fast.recv() == b"%d" % (2 * i + 1)
    push.send(b"x", timeout=0)  # only `fast` has room
    push.send(b"y", timeout=0)
    assert fast.recv() == b"x" and fast.recv() == b"y"
    assert slow.recv() == b"0"


def test_pub_drops_for_a_full_subscriber(make):
    pub, sub = pair(make, mq.PUB, mq.SUB, a_opts={"sndhwm": 2}, b_opts={"rcvhwm": 1})
    sub.subscribe(b"")
    for i in range(10):
        pub.send(b"%d" % i, timeout=0)  # never blocks
    assert [sub.recv() for _ in range(3)] == [b"0", b"1", b"2"]
    with pytest.raises(Timeout):
        sub.recv(timeout=0)


def test_router_drops_for_a_full_peer_or_blocks_with_mandatory(make):
    router, dealer = pair(make, mq.ROUTER, mq.DEALER, a_opts={"sndhwm": 1},
                          b_opts={"routing_id": b"d", "rcvhwm": 1})
    dealer.send(b"hello")
    router.recv_multipart()
    for i in range(5):
        router.send_multipart([b"d", b"%d" % i])
    assert [dealer.recv(), dealer.recv()] == [b"0", b"1"]
    with pytest.raises(Timeout):
        dealer.recv(timeout=0)
    router.router_mandatory = True
    router.send_multipart([b"d", b"a"])
    router.send_multipart([b"d", b"b"])
    with pytest.raises(Timeout):
        router.send_multipart([b"d", b"c"], timeout=0.02)
    assert dealer.recv() == b"a"
    router.send_multipart([b"d", b"c"], timeout=1)


def test_queueing_before_the_peer_binds(make):
    name = ep()
    push = make(mq.PUSH, sndhwm=3)
    push.connect(name)
    for i in range(3):
        push.send(b"%d" % i, timeout=0)
    with pytest.raises(Timeout):
        push.send(b"x", timeout=0)
    pull = make(mq.PULL)
    pull.bind(name)
    assert [pull.recv() for _ in range(3)] == [b"0", b"1", b"2"]
