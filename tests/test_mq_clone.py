"""The Clone pattern in one process: the CHP codec as tables of bytes, the server's store, and
servers and clients replicating, expiring, filtering by subtree, refusing bad messages and
failing over."""

from __future__ import annotations

import logging

import pytest
from mq_helpers import until

import dhaga
from dhaga import mq
from dhaga.mq.clone import (
    BadMessage,
    CloneClient,
    CloneServer,
    KVMsg,
    Limits,
    ServerEndpoints,
)
from dhaga.mq.clone import protocol as chp
from dhaga.mq.clone.store import Pending, RecentIds, Store
from dhaga.testing import settle

U1, U2 = bytes(range(16)), bytes(range(16, 32))
SEQ5 = b"\0\0\0\0\0\0\0\x05"


# ---------------------------------------------------------------------------- the codec
@pytest.mark.parametrize(
    "msg,frames",
    [
        (
            KVMsg("/a/b", 5, U1, {"ttl": "1.5"}, b"v"),
            [b"/a/b", SEQ5, U1, b"ttl=1.5\n", b"v"],
        ),
        (KVMsg("k"), [b"k", bytes(8), b"", b"", b""]),
        (
            KVMsg("clé", 2**64 - 1, b"", {"a": "x=y", "b": ""}, b"\0\xff"),
            [b"cl\xc3\xa9", b"\xff" * 8, b"", b"a=x=y\nb=\n", b"\0\xff"],
        ),
    ],
)
def test_kvmsg_frames(msg, frames):
    assert msg.encode() == frames
    assert chp.decode_kvmsg(frames) == msg


def test_commands_frames():
    assert chp.encode_icanhaz("/a/") == [b"ICANHAZ?", b"/a/"]
    assert chp.kthxbai(5, "/a/") == [b"KTHXBAI", SEQ5, b"", b"", b"/a/"]
    assert chp.hugz(0) == [b"HUGZ", bytes(8), b"", b"", b""]
    assert chp.decode_icanhaz([b"ICANHAZ?", b""]) == ""


@pytest.mark.parametrize(
    "frames,reason",
    [
        ([b"k", bytes(8), b"", b""], "4 frames"),
        ([b"k", bytes(8), b"", b"", b"", b""], "6 frames"),
        ([b"", bytes(8), b"", b"", b"v"], "empty key"),
        ([b"\xff", bytes(8), b"", b"", b"v"], "key is not UTF-8"),
        ([b"k" * 1025, bytes(8), b"", b"", b"v"], "key of 1025 bytes"),
        ([b"k", bytes(7), b"", b"", b"v"], "sequence of 7 bytes"),
        ([b"k", bytes(9), b"", b"", b"v"], "sequence of 9 bytes"),
        ([b"k", bytes(8), b"x" * 15, b"", b"v"], "uuid of 15 bytes"),
        ([b"k", bytes(8), b"", b"novalue\n", b"v"], "not name=value"),
        ([b"k", bytes(8), b"", b"=x\n", b"v"], "not name=value"),
        ([b"k", bytes(8), b"", b"a=1\na=2\n", b"v"], "given twice"),
        ([b"k", bytes(8), b"", b"a=\xff\n", b"v"], "properties frame is not UTF-8"),
        ([b"k", bytes(8), b"", b"a=" + b"x" * 5000, b"v"], "properties frame of"),
        ([b"k", bytes(8), b"", b"ttl=-1\n", b"v"], "bad ttl"),
        ([b"k", bytes(8), b"", b"ttl=0\n", b"v"], "bad ttl"),
        ([b"k", bytes(8), b"", b"ttl=1e3\n", b"v"], "bad ttl"),
        ([b"k", bytes(8), b"", b"ttl=nan\n", b"v"], "bad ttl"),
        ([b"k", bytes(8), b"", b"ttl=1.2.3\n", b"v"], "bad ttl"),
        ([b"k", bytes(8), b"", b"ttl=999999999999\n", b"v"], "bad ttl"),
        ([b"k", bytes(8), b"", b"", b"v" * (2**20 + 1)], "value of 1048577 bytes"),
    ],
)
def test_bad_kvmsg(frames, reason):
    with pytest.raises(BadMessage) as info:
        chp.decode_kvmsg(frames)
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)  # a ProtocolError
    assert all(len(f) <= 64 for f in info.value.frames)


@pytest.mark.parametrize("key", ["HUGZ", "KTHXBAI", "ICANHAZ?"])
def test_kvset_refuses_reserved_keys(key):
    with pytest.raises(BadMessage, match="reserved"):
        chp.decode_kvset(KVMsg(key, body=b"x").encode())


@pytest.mark.parametrize(
    "frames,reason",
    [
        ([b"ICANHAZ?"], "1 frames"),
        ([b"ICANHAZ?", b"", b""], "3 frames"),
        ([b"GIMME", b""], "command"),
        ([b"ICANHAZ?", b"\xfe"], "subtree is not UTF-8"),
        ([b"ICANHAZ?", b"/" * 2000], "subtree of 2000 bytes"),
    ],
)
def test_bad_icanhaz(frames, reason):
    with pytest.raises(BadMessage) as info:
        chp.decode_icanhaz(frames)
    assert reason in info.value.reason


@pytest.mark.parametrize(
    "seconds,text",
    [(1, "1"), (30.0, "30"), (0.5, "0.5"), (1.25, "1.25"), (0.0004, "0.")],
)
def test_format_ttl(seconds, text):
    assert chp.format_ttl(seconds) == text


def test_properties_that_cannot_be_encoded():
    for props in ({"a=b": "1"}, {"": "1"}, {"a": "1\n2"}):
        with pytest.raises(ValueError):
            chp.encode_properties(props)
    assert chp.decode_properties(b"a=1\nb=2") == {
        "a": "1",
        "b": "2",
    }  # last newline optional


# ---------------------------------------------------------------------------- the store
def test_store_numbers_deletes_and_expires():
    store = Store()
    a = store.apply(KVMsg("/a", uuid=U1, body=b"1"), now=0.0)
    t = store.apply(KVMsg("/t", properties={"ttl": "2"}, body=b"x"), now=0.0)
    assert (a.sequence, t.sequence, store.sequence) == (1, 2, 2)
    assert U1 in store.seen and store.get("/a").body == b"1"
    assert [m.key for m in store.snapshot("/", now=0.5)] == ["/a", "/t"]
    assert store.snapshot("/t", now=0.5)[0].properties["ttl"] == "1.5"  # what is left
    assert store.expire(now=1.9) == []
    store.apply(
        KVMsg("/t", properties={"ttl": "5"}, body=b"y"), now=1.0
    )  # renewed: seq 3
    assert store.expire(now=2.5) == []  # the first expiry was for the replaced value
    assert store.expire(now=6.0) == [KVMsg("/t", 4)]
    store.apply(KVMsg("/a"), now=7.0)  # empty body: delete
    assert len(store) == 0 and store.sequence == 5


def test_recent_ids_forget_the_oldest():
    ids = RecentIds(size=2)
    for u in (b"a" * 16, b"b" * 16, b"c" * 16, b""):
        ids.add(u)
    assert b"a" * 16 not in ids and b"c" * 16 in ids and len(ids) == 2


def test_pending_keeps_what_the_active_has_not_published():
    seen = RecentIds()
    pending = Pending(seen, size=3)
    assert pending.hold(KVMsg("k", uuid=U1, body=b"1"))
    assert not pending.hold(KVMsg("k", uuid=U1, body=b"1"))  # a resend
    assert not pending.hold(KVMsg("k", body=b"no uuid"))
    pending.published(U1)
    assert len(pending) == 0
    assert not pending.hold(KVMsg("k", uuid=U1, body=b"late copy"))  # published already
    for i in range(4):
        pending.hold(KVMsg(f"k{i}", uuid=bytes([i]) * 16, body=b"v"))
    assert [m.key for m in pending.take()] == [
        "k1",
        "k2",
        "k3",
    ] and pending.dropped == 1


# ---------------------------------------------------------------------------- in process
@pytest.fixture
def sockets():
    """Make dhaga.mq sockets that are closed when the test ends."""
    made: list[mq.Socket] = []

    def make(kind: str, **options) -> mq.Socket:
        made.append(mq.Socket(kind, linger=0, **options))
        return made[-1]

    yield make
    for sock in made:
        sock.close()


@pytest.fixture
def closing():
    things = []
    yield things.append
    for thing in reversed(things):
        thing.close()
    settle()  # the servers' and clients' dhagas have ended


def serve(closing, **kw) -> CloneServer:
    server = CloneServer("tcp://127.0.0.1:*", heartbeat=0.05, **kw)
    server.start()
    closing(server)
    return server


def client(closing, servers, subtree="", **kw) -> CloneClient:
    c = CloneClient(servers, subtree, timeout=kw.pop("timeout", 0.5), **kw)
    closing(c)
    assert c.wait_synced(timeout=5)
    return c


def test_updates_replicate_to_every_client(closing):
    server = serve(closing)
    a, b = client(closing, server.endpoints), client(closing, server.endpoints)
    a.set("/x", b"1")
    assert a.get("/x") == b"1"  # at once, locally
    b.set("/y", "two")
    a.delete("/x")
    assert a.flush(5) and b.flush(5)
    until(lambda: a.snapshot() == b.snapshot() == {"/y": b"two"})
    assert a.sequence == b.sequence == server.store.sequence == 3
    assert sorted(a) == ["/y"] and "/y" in b and len(b) == 1


def test_a_late_joiner_gets_the_same_map(closing):
    server = serve(closing)
    a = client(closing, server.endpoints)
    for i in range(50):
        a.set(f"/k{i}", str(i))
    a.delete("/k7")
    assert a.flush(5)
    late = client(closing, server.endpoints)
    assert late.snapshot() == a.snapshot() and len(late) == 49
    assert late.sequence == a.sequence == 51


def test_subtree_client_sees_only_its_subtree(closing):
    server = serve(closing)
    writer = client(closing, server.endpoints)
    writer.set("/a/1", b"x")
    writer.set("/b/1", b"y")
    assert writer.flush(5)
    sub = client(closing, server.endpoints, "/a/")
    assert sub.snapshot() == {"/a/1": b"x"}
    with sub.watch() as changes:
        writer.set("/b/2", b"y")
        writer.set("/a/2", b"z")
        assert changes.get(timeout=5) == ("/a/2", b"z", 4)
    assert sub.snapshot() == {"/a/1": b"x", "/a/2": b"z"}


def test_ttl_keys_expire_on_every_client(closing):
    server = serve(closing)
    a, b = client(closing, server.endpoints), client(closing, server.endpoints)
    with b.watch("/t") as changes:
        a.set("/t", b"soon gone", ttl=0.2)
        a.set("/keep", b"1")
        assert changes.get(timeout=5) == ("/t", b"soon gone", 1)
        gone = changes.get(timeout=5)
    assert gone.key == "/t" and gone.value is None and gone.sequence == 3
    until(lambda: "/t" not in a and a.get("/keep") == b"1")
    assert "/t" not in b


def test_watch_reports_each_change_once_and_ends_on_close(closing):
    server = serve(closing)
    a = client(closing, server.endpoints)
    w = a.watch("/w/")
    a.set("/w/1", b"a")  # local change, then the server's echo: reported once
    a.set("/w/1", b"a")  # same value: no change
    a.set("/other", b"x")
    a.set("/w/1", b"b")
    assert a.flush(5)
    assert w.get(timeout=1) == ("/w/1", b"a", 0)
    assert w.get(timeout=1) == ("/w/1", b"b", 0)
    with pytest.raises(dhaga.Timeout):
        w.get(timeout=0.05)
    w.close()
    assert list(w) == []
    with pytest.raises(mq.SocketClosed):
        w.get(timeout=1)


def test_client_refuses_bad_updates(closing):
    server = serve(closing)
    a = client(closing, server.endpoints)
    for key, value, ttl in [
        ("", b"v", None),
        ("HUGZ", b"v", None),
        ("k" * 2000, b"v", None),
        ("k", b"v" * (2**20 + 1), None),
        ("k", b"v", -1.0),
        ("k", b"v", float("inf")),
    ]:
        with pytest.raises(ValueError):
            a.set(key, value, ttl=ttl)
    assert len(a) == 0


def test_malformed_client_messages_are_dropped_and_logged(closing, sockets, dhaga_log):
    server = serve(closing, limits=Limits(max_value=1000))
    good = client(closing, server.endpoints)
    good.set("/good", b"1")
    assert good.flush(5)
    bad = sockets(mq.PUB)
    bad.connect(server.endpoints.collector)
    asker = sockets(mq.DEALER)
    asker.connect(server.endpoints.snapshot)
    garbage = [
        [b"/bad1", bytes(8), b"", b""],  # 4 frames
        [b"/bad2", bytes(3), b"", b"", b"v"],  # short sequence
        [b"/bad3", bytes(8), b"", b"oops\n", b"v"],  # bad properties
        [b"\xff\xfe", bytes(8), b"", b"", b"v"],  # key not UTF-8
        [b"/bad5", bytes(8), b"", b"", b"v" * 1500],  # over the server's limit
        [b"HUGZ", bytes(8), b"", b"", b"v"],  # reserved key
        [b"/bad7", bytes(8), b"", b"ttl=forever\n", b"v"],
    ]

    def flood() -> bool:  # until the collector's subscription is up and all were read
        for frames in garbage:
            bad.send_multipart(frames)
        return dhaga_log.text.count("dropped a bad update from a client") >= len(
            garbage
        )

    until(flood)
    asker.send_multipart([b"ICANHAZ?"])
    asker.send_multipart([b"GIMME", b""])
    until(lambda: dhaga_log.text.count("dropped a bad snapshot request") >= 2)
    for reason in (
        "4 frames",
        "sequence of 3 bytes",
        "not name=value",
        "key is not UTF-8",
        "value of 1500 bytes",
        "reserved",
        "bad ttl",
    ):
        assert reason in dhaga_log.text
    assert any(
        r.name == "dhaga.mq.clone" and r.levelno == logging.WARNING
        for r in dhaga_log.records
    )
    good.set("/after", b"2")  # still serving, map intact
    assert good.flush(5)
    late = client(closing, server.endpoints)
    assert late.snapshot() == {"/good": b"1", "/after": b"2"}
    assert server.store.sequence == 2


def test_a_resent_update_is_applied_once(closing, sockets):
    server = serve(closing)
    watcher = client(closing, server.endpoints)
    raw = sockets(mq.PUB)
    raw.connect(server.endpoints.collector)
    frames = KVMsg("/once", 0, U1, {}, b"v").encode()
    until(lambda: raw.send_multipart(frames) or "/once" in watcher)
    for _ in range(5):
        raw.send_multipart(frames)
    raw.send_multipart(KVMsg("/marker", 0, U2, {}, b"m").encode())
    until(lambda: "/marker" in watcher)
    assert server.store.sequence == 2  # /once numbered once, then /marker


# ---------------------------------------------------------------------------- a scripted server
class FakeServer:
    """Sockets a test drives by hand, in place of a CloneServer."""

    def __init__(self, make) -> None:
        self.snapshot, self.pub = make(mq.ROUTER), make(mq.XPUB, xpub_verbose=True)
        self.collector = make(mq.SUB)
        self.endpoints = ServerEndpoints(
            self.snapshot.bind("tcp://127.0.0.1:*"),
            self.pub.bind("tcp://127.0.0.1:*"),
            self.collector.bind("tcp://127.0.0.1:*"),
            "",
        )

    def answer_snapshot(
        self, sequence: int, items: list[KVMsg], subtree: str = ""
    ) -> None:
        self.pub.recv(timeout=5)  # a subscription: greet it as servers do
        self.pub.send_multipart(chp.hugz(0))
        frames = self.snapshot.recv_multipart(timeout=5)
        assert frames[1:] == chp.encode_icanhaz(subtree)
        for msg in items:
            self.snapshot.send_multipart([frames[0], *msg.encode()])
        self.snapshot.send_multipart([frames[0], *chp.kthxbai(sequence, subtree)])


def test_client_drops_old_updates_and_resyncs_on_a_gap(sockets, closing, dhaga_log):
    fake = FakeServer(sockets)
    c = CloneClient(fake.endpoints, timeout=2.0)
    closing(c)
    fake.answer_snapshot(5, [KVMsg("/a", 3, body=b"snap")])
    assert c.wait_synced(timeout=5) and c.snapshot() == {"/a": b"snap"}
    fake.pub.send_multipart(KVMsg("/a", 5, body=b"old").encode())  # not newer: dropped
    fake.pub.send_multipart(KVMsg("/a", 6, body=b"new").encode())
    until(lambda: c.get("/a") == b"new")
    fake.pub.send_multipart([b"/a", b"short"])  # malformed: dropped, logged
    fake.pub.send_multipart(
        KVMsg("/a", 8, body=b"gap").encode()
    )  # 7 is missing: resync
    fake.snapshot.recv_multipart(timeout=5)  # the client asks again
    assert c.get("/a") == b"new" and c.sequence == 6
    assert "missed updates 7..7" in dhaga_log.text
    assert "dropped a bad update" in dhaga_log.text


# ---------------------------------------------------------------------------- failover
def test_backup_takes_over_with_the_pending_updates(closing):
    from dhaga.mq.clone import free_base

    a, b = free_base(), free_base()
    primary = CloneServer(a, b, primary=True, timeout=0.3, heartbeat=0.05)
    backup = CloneServer(b, a, primary=False, timeout=0.3, heartbeat=0.05)
    closing(backup)
    closing(primary)
    primary.start()
    backup.start()
    c = client(closing, [a, b], timeout=0.3, resend=0.2)
    assert primary.active and backup.wait_active(0) is False
    for i in range(5):
        c.set(f"/before/{i}", b"v")
    assert c.flush(5)
    until(lambda: len(backup.store) == 5)  # the passive follows the active
    primary.close()
    c.set(
        "/during", b"v"
    )  # while the client has not noticed yet: pending on the backup
    assert backup.wait_active(timeout=5)
    until(lambda: c.server == backup.endpoints and c.synced)
    c.set("/after", b"v")
    assert c.flush(5)
    expected = {f"/before/{i}" for i in range(5)} | {"/during", "/after"}
    until(lambda: set(c) == expected)
    assert len(backup.store) == 7


def test_free_base_looks_below_the_ephemeral_range_and_the_block_binds():
    """Ports of outgoing connections sit in TIME_WAIT by the thousand after a busy test run,
    and cannot be bound: blocks come from below the range those ports are taken from."""
    import socket

    from dhaga.mq.clone import free_base
    from dhaga.mq.clone.endpoints import _ephemeral_low

    base = free_base()
    host, port = base.removeprefix("tcp://").rsplit(":", 1)
    p = int(port)
    assert host == "127.0.0.1"
    if _ephemeral_low() > 1024 + 4:
        assert p + 3 < _ephemeral_low()
    held = []
    try:
        for i in range(4):  # the whole block binds, as a server's four listeners will
            s = socket.socket()
            held.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, p + i))
    finally:
        for s in held:
            s.close()
