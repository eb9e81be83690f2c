"""CloneServer: one server of the Clone pattern (RFC 12), alone or as a Binary Star pair.

How this works
--------------
A server runs a few dhagas over its sockets, all sharing one `Store`:

* snapshots (ROUTER, port P): each ``ICANHAZ?`` is a Binary Star vote; when it is accepted,
  the keys under the subtree are queued as KVSYNC messages, then KTHXBAI with the sequence.
  The whole snapshot is queued without yielding, so it is one consistent state;
* the collector (SUB, P + 2): client updates. The active numbers, stores and publishes them
  (PUB, P + 1); the passive keeps them on its pending list until it sees the active publish
  them (matched by UUID), and applies what is left when it takes over;
* a ticker: HUGZ every ``heartbeat`` seconds (from the passive too: it says "alive") and, on
  the active, deletions of keys whose TTL ran out;
* greeting: the publisher is an XPUB, and a HUGZ goes out as soon as a subscription arrives,
  so a client knows its subscription is in place before it asks for a snapshot;
* following (passive only): a subscription to the active's publisher, a snapshot from it
  first, and then every update in sequence; a gap in the sequence means a missed update, and
  a fresh snapshot.

This module must not know the Binary Star rules (`dhaga.mq.bstar` has them) or the wire
format (`protocol`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING

from ...errors import Timeout
from ...scheduler import Dhaga, current, sleep, spawn
from ...sync import Event as _Flag
from ..bstar import BinaryStar, State
from ..errors import BadMessage, SocketClosed
from ..socket import Socket
from .endpoints import ServerEndpoints, free_base
from .keys import curve_options
from .protocol import (
    DEFAULT_LIMITS,
    HUGZ,
    KTHXBAI,
    KVMsg,
    Limits,
    decode_icanhaz,
    decode_kvmsg,
    decode_kvset,
    encode_icanhaz,
    hugz,
    kthxbai,
)  # fmt: skip
from .store import Pending, RecentIds, Store

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["CloneServer"]

log = logging.getLogger("dhaga.mq.clone")


class CloneServer:
    """A Clone server: serves snapshots, collects and publishes updates, expires TTLs.

    Args:
        bind: our endpoints: ``tcp://host:P`` (ports P..P+3), ``tcp://host:*`` (any free
            block), or a `ServerEndpoints`.
        peer: the other server of a Binary Star pair (same forms); None for a lone server,
            which is always active.
        primary: whether we are the pair's primary (ignored without a peer).
        timeout: seconds of peer silence before a client's request makes us active.
        heartbeat: seconds between HUGZ.
        limits: what a client's message may hold.
        hwm: messages queued per connection before they are dropped (both ways).
        on_state: called with the new `State` whenever it changes.
        curve: the server's CURVE key pair (public, secret; Z85): clients (and the peer, which
            shares the pair) must then know the public key, and all Clone traffic is encrypted,
            the Binary Star state channel between the two servers too.
    """

    def __init__(
        self,
        bind: str | ServerEndpoints = "tcp://127.0.0.1:*",
        peer: str | ServerEndpoints | None = None,
        *,
        primary: bool = True,
        timeout: float = 2.0,
        heartbeat: float = 1.0,
        limits: Limits = DEFAULT_LIMITS,
        hwm: int = 100_000,
        on_state: Callable[[State], None] | None = None,
        curve: tuple[str, str] | None = None,
    ) -> None:
        self._serving = curve_options(server=curve)
        self._reaching = curve_options(client=curve and (curve[0], *curve))
        self._bind_spec = bind
        self.peer = None if peer is None else ServerEndpoints.from_base(peer)
        self.primary = primary
        self.timeout, self.heartbeat = timeout, heartbeat
        self.limits, self.hwm = limits, hwm
        self.on_state = on_state
        self.endpoints: ServerEndpoints | None = None
        seen = RecentIds()
        self.store = Store(seen)
        self.pending = Pending(seen)
        self.star: BinaryStar | None = None
        self._synced = False
        self._sockets: list[Socket] = []
        self._dhagas: list[Dhaga] = []
        self._closed = _Flag()
        self._became_active = _Flag()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> State:
        """`State.ACTIVE` for a lone server; the Binary Star state in a pair."""
        return State.ACTIVE if self.star is None else self.star.state

    @property
    def active(self) -> bool:
        """True while this server is active (it answers snapshots and publishes updates)."""
        return self.state is State.ACTIVE

    def wait_active(self, timeout: float | None = None) -> bool:
        """Block until this server is (or has been) active.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            True once the server is or has been active; False if the timeout expired first.
        """
        return self._became_active.wait(timeout)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> ServerEndpoints:
        """Bind, connect to the peer, and start serving.

        Returns:
            the actual endpoints.
        """
        if self.endpoints is not None:
            return self.endpoints
        self._bind()
        assert self.endpoints is not None
        if self.peer is None:
            self._became_active.set()
        else:
            self._subscriber = self._socket(
                "SUB", rcvhwm=self.hwm, maxmsgsize=self.limits.max_message, reaching=True
            )
            self._subscriber.subscribe(b"")
            self._subscriber.connect(self.peer.publisher)
        loops = [
            self._serve_snapshots,
            self._collect,
            self._tick,
            self._greet_subscribers,
        ]
        if self.peer is not None:
            loops.append(self._follow)
        self._dhagas = [spawn(fn) for fn in loops]
        log.info("clone server listening: %s", self.endpoints)
        return self.endpoints

    def serve_forever(self) -> None:
        """`start`, then block until `close`.

        Raises:
            SplitBrain: the Binary Star pair split; the server stopped.
        """
        self.start()
        self._closed.wait()
        if self.star is not None and self.star.failed is not None:
            raise self.star.failed

    def close(self) -> None:
        """Stop serving and close every socket."""
        if self._closed.is_set():
            return
        me = current()
        for d in self._dhagas:
            if d is not me:
                d.kill(block=False)
        if self.star is not None:
            self.star.close()
        for sock in self._sockets:
            sock.close(linger=0)
        self._closed.set()

    def _socket(self, kind: str, reaching: bool = False, **options: object) -> Socket:
        security = self._reaching if reaching else self._serving  # our peer's, or ours
        sock = Socket(kind, linger=0, **options, **security)
        self._sockets.append(sock)
        return sock

    def _bind(self) -> None:
        spec = self._bind_spec
        pick = isinstance(spec, str) and spec.rsplit(":", 1)[-1] in ("*", "0")
        for _ in range(1 if not pick else 50):
            if pick:
                host = spec.rsplit(":", 1)[0]  # type: ignore[union-attr]
                literal = host.removeprefix("tcp://")
                if literal.replace(".", "").isdigit():  # an IPv4 address: a block of free ports
                    wanted = ServerEndpoints.from_base(free_base(literal))
                else:  # a port the transport picks, then the three after it
                    snap = Socket("ROUTER", linger=0)
                    first = snap.bind(f"{host}:*")
                    snap.close(linger=0)
                    wanted = ServerEndpoints.from_base(first)
            else:
                wanted = ServerEndpoints.from_base(spec)  # type: ignore[arg-type]
            try:
                self._bind_all(wanted)
                return
            except OSError:
                for sock in self._sockets:
                    sock.close(linger=0)
                self._sockets.clear()
                if self.star is not None:
                    self.star.close()
                    self.star = None
                if not pick:
                    raise
        raise OSError(f"no free block of ports for {spec!r}")

    def _bind_all(self, wanted: ServerEndpoints) -> None:
        maxsize = self.limits.max_message
        self._snapshot = self._socket("ROUTER", sndhwm=self.hwm, maxmsgsize=maxsize)
        self._publisher = self._socket("XPUB", sndhwm=self.hwm, xpub_verbose=True)
        self._collector = self._socket("SUB", rcvhwm=self.hwm, maxmsgsize=maxsize)
        self._collector.subscribe(b"")
        snapshot = self._snapshot.bind(wanted.snapshot)
        publisher = self._publisher.bind(wanted.publisher)
        collector = self._collector.bind(wanted.collector)
        state = wanted.state
        if self.peer is not None:
            self.star = BinaryStar(
                self.primary,
                wanted.state,
                self.peer.state,
                timeout=self.timeout,
                on_active=self._become_active,
                on_passive=self._become_passive,
                on_fatal=self._fatal,
                pub_options=self._serving,
                sub_options=self._reaching,
            )
            state = self.star.start()
        self.endpoints = ServerEndpoints(snapshot, publisher, collector, state)

    # ------------------------------------------------------------------ state changes
    def _become_active(self) -> None:
        held = self.pending.take()
        applied = sum(self._publish_update(msg) for msg in held)
        log.info(
            "clone server active at sequence %d (%d of %d pending updates applied)",
            self.store.sequence,
            applied,
            len(held),
        )
        self._became_active.set()
        self._announce(State.ACTIVE)

    def _become_passive(self) -> None:
        self.store.clear()
        self.pending.clear()
        self._synced = False
        log.info("clone server passive: following %s", self.peer)
        self._announce(State.PASSIVE)

    def _fatal(self, exc: Exception) -> None:
        log.error("clone server stopping: %s", exc)
        spawn(self.close)

    def _announce(self, state: State) -> None:
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                log.exception("clone server: the on_state callback failed")

    # ------------------------------------------------------------------ serving
    def _publish_update(self, msg: KVMsg) -> bool:
        """Number, store and publish a client's update, unless it was applied before."""
        if msg.uuid and msg.uuid in self.store.seen:
            log.debug("dropped a duplicate of update %s", msg.uuid.hex())
            return False
        numbered = self.store.apply(msg, monotonic())
        self._publisher.send_multipart(numbered.encode())
        return True

    def _serve_snapshots(self) -> None:
        sock = self._snapshot
        while True:
            frames = sock.recv_multipart()
            identity, request = frames[0], frames[1:]
            try:
                subtree = decode_icanhaz(request, self.limits)
            except BadMessage as exc:
                log.warning("dropped a bad snapshot request: %s", exc.reason)
                continue
            if self.star is not None and not self.star.vote():
                log.debug(
                    "ignored a snapshot request: not active (%s)", self.state.name
                )
                continue
            for msg in self.store.snapshot(subtree, monotonic()):
                sock.send_multipart([identity, *msg.encode()])
            sock.send_multipart([identity, *kthxbai(self.store.sequence, subtree)])

    def _collect(self) -> None:
        sock = self._collector
        while True:
            frames = sock.recv_multipart()
            try:
                msg = decode_kvset(frames, self.limits)
            except BadMessage as exc:
                log.warning("dropped a bad update from a client: %s", exc.reason)
                continue
            if self.active:
                self._publish_update(msg)
            else:  # passive or undecided: applied if we become active before the peer has it
                self.pending.hold(msg)

    def _tick(self) -> None:
        next_hugz = 0.0
        while True:
            now = monotonic()
            if self.active:
                for msg in self.store.expire(now):
                    self._publisher.send_multipart(msg.encode())
            if now >= next_hugz:
                self._publisher.send_multipart(hugz(self.store.sequence))
                next_hugz = now + self.heartbeat
            sleep(min(self.heartbeat, 0.05))

    def _greet_subscribers(self) -> None:
        sock = self._publisher
        while True:
            frames = sock.recv_multipart()
            if frames and frames[0][:1] == b"\x01":
                sock.send_multipart(hugz(self.store.sequence))

    # ------------------------------------------------------------------ following the active
    def _follow(self) -> None:
        sub = self._subscriber
        store = self.store
        while True:
            frames = sub.recv_multipart()
            if self.state is not State.PASSIVE:
                continue
            try:
                msg = decode_kvmsg(frames, self.limits)
            except BadMessage as exc:
                log.warning("dropped a bad update from the peer: %s", exc.reason)
                continue
            if not self._synced:
                self._sync_from_peer()  # this message proved our subscription is in place
                continue
            if msg.key == HUGZ:
                if msg.sequence > store.sequence:
                    log.warning(
                        "missed updates %d..%d from the peer: resyncing",
                        store.sequence + 1,
                        msg.sequence,
                    )
                    self._sync_from_peer()
                continue
            self.pending.published(msg.uuid)
            if msg.sequence <= store.sequence:
                continue
            if msg.sequence != store.sequence + 1:
                log.warning(
                    "missed updates %d..%d from the peer: resyncing",
                    store.sequence + 1,
                    msg.sequence - 1,
                )
                self._sync_from_peer()
                continue
            store.put(msg, monotonic())

    def _sync_from_peer(self) -> None:
        """Replace our map with a snapshot from the active peer (if we are still passive)."""
        assert self.peer is not None
        self._synced = False
        sub = self._subscriber
        try:
            while True:  # everything queued was published before our request: the snapshot has it
                sub.recv_multipart(timeout=0)
        except Timeout:
            pass
        fresh: list[KVMsg] = []
        with Socket("DEALER", linger=0, maxmsgsize=self.limits.max_message,
                    **self._reaching) as dealer:
            dealer.connect(self.peer.snapshot)
            dealer.send_multipart(encode_icanhaz(""))
            try:
                while True:
                    msg = decode_kvmsg(
                        dealer.recv_multipart(timeout=self.timeout), self.limits
                    )
                    if msg.key == KTHXBAI:
                        break
                    fresh.append(msg)
            except (Timeout, BadMessage, SocketClosed) as exc:
                log.warning("no snapshot from the peer (%s): will retry", exc)
                return
        if self.state is not State.PASSIVE:
            return
        now = monotonic()
        self.store.clear()
        for item in fresh:
            self.store.put(item, now)
            self.pending.published(item.uuid)
        self.store.sequence = msg.sequence
        self._synced = True
        log.info(
            "clone server synced from the peer: %d keys at sequence %d",
            len(fresh),
            msg.sequence,
        )
