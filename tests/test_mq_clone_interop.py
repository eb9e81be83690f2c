"""A CloneServer talking CHP (RFC 12) with libzmq sockets (through pyzmq) written from the RFC:
a client's update through the collector, its publication, and a snapshot with KTHXBAI."""

from __future__ import annotations

import uuid

import pytest
from conftest import need_peer

import dhaga
from dhaga.mq.clone import CloneServer

try:
    import zmq
except ImportError:  # pragma: no cover - depends on the environment
    zmq = None

pytestmark = pytest.mark.peer
WAIT_MS = 5000


def seq(n: int) -> bytes:
    return n.to_bytes(8, "big")  # RFC 12: 8 bytes, network order


@pytest.fixture
def zctx():
    need_peer(zmq is not None, "pyzmq")
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def test_libzmq_client_updates_subscribes_and_snapshots(zctx):
    server = CloneServer("tcp://127.0.0.1:*", heartbeat=0.05)
    ends = server.start()
    try:
        sub = zctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVTIMEO, 100)  # per attempt, below
        sub.subscribe(b"/iop/")
        sub.connect(ends.publisher)
        pub = zctx.socket(zmq.PUB)
        pub.connect(ends.collector)
        update = [b"/iop/colour", seq(0), uuid.uuid4().bytes, b"ttl=30\n", b"blue"]

        def publish_until_seen() -> list[bytes]:
            # PUB drops what it sends before the server's subscription arrives (the slow
            # joiner): resend the same update (same UUID: the server applies it once) until it
            # comes back published. Bounded by the attempts and the receive timeout.
            for _ in range(WAIT_MS // 100):
                pub.send_multipart(update)
                try:
                    return sub.recv_multipart()
                except zmq.Again:
                    continue
            raise AssertionError("the update never came back published")

        published = dhaga.to_thread(publish_until_seen)
        key, sequence, ident, props, body = published
        assert (key, ident, body) == (b"/iop/colour", update[2], b"blue")
        assert int.from_bytes(sequence, "big") == 1 and b"ttl=" in props

        dealer = zctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.RCVTIMEO, WAIT_MS)
        dealer.connect(ends.snapshot)

        def snapshot() -> list[list[bytes]]:
            dealer.send_multipart([b"ICANHAZ?", b"/iop/"])
            got = []
            while True:
                frames = dealer.recv_multipart()
                got.append(frames)
                if frames[0] == b"KTHXBAI":
                    return got

        messages = dhaga.to_thread(snapshot)
        *kvsync, kthxbai = messages
        assert [m[0] for m in kvsync] == [b"/iop/colour"] and kvsync[0][4] == b"blue"
        assert len(kvsync[0]) == 5 and int.from_bytes(kvsync[0][1], "big") == 1
        assert kthxbai[0] == b"KTHXBAI" and int.from_bytes(kthxbai[1], "big") == 1
        assert kthxbai[-1] == b"/iop/"  # the subtree, echoed back
        assert len(server.store.snapshot("", 0.0)) == 1  # applied once, however often sent
        for s in (sub, pub, dealer):
            s.close(linger=0)
    finally:
        server.close()
