"""CloneClient: a local replica of a Clone server's key-value map (or of one subtree of it).

How this works
--------------
One agent dhaga follows one server at a time:

1. *sync*: the client's SUB to that server has been subscribed (to the subtree, and to HUGZ)
   since the client started; a HUGZ heard on it proves the subscription is in place (servers
   greet every new subscription with one). Only then does it send ``ICANHAZ?`` on a fresh
   DEALER, so no update can fall between the snapshot and the stream. A passive server does
   not answer, so the request is repeated every ``timeout / 4`` (each one a Binary Star
   vote) and abandoned after ``2 * timeout`` of silence. The snapshot replaces the map, and
   watchers are told of each key that differs.
2. *follow*: updates not newer than the map are dropped; each newer one is applied. A client
   of the whole map (no subtree) sees every sequence number, so a gap, or a HUGZ announcing a
   sequence it has not seen, means it missed an update: it syncs again. A server silent for
   ``timeout`` seconds is counted dead and the client moves to the next one (failover).

Updates go out on one PUB connected to every server's collector (the passive keeps them
pending). Each keeps its UUID until the server publishes it back; one not seen within
``resend`` seconds, or when the client syncs with a new server, is sent again (the servers
drop duplicates by UUID). This module must not know the server's internals or the wire format
(`protocol` has it).
"""

from __future__ import annotations

import logging
import math
import uuid as _uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from time import monotonic
from typing import TYPE_CHECKING

from ...errors import Timeout
from ...scheduler import current, spawn
from ...sync import Event as _Flag
from ..errors import BadMessage, SocketClosed
from ..poller import POLLIN, Poller
from ..socket import Socket
from .endpoints import ServerEndpoints
from .keys import curve_options
from .protocol import (
    DEFAULT_LIMITS,
    HUGZ,
    KTHXBAI,
    RESERVED_KEYS,
    KVMsg,
    Limits,
    decode_kvmsg,
    encode_icanhaz,
    format_ttl,
)  # fmt: skip
from .watch import Change, Watch

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Change", "CloneClient", "Watch"]

log = logging.getLogger("dhaga.mq.clone")

_MAX_RESENDS = 5


class CloneClient:
    """A replica of a Clone server's map, kept up to date, failing over between servers.

    It starts at once: use `wait_synced` before relying on the content.

    Args:
        servers: one server or a list (a Binary Star pair: primary first), each as
            ``tcp://host:P`` (RFC 12's ports P, P+1, P+2) or `ServerEndpoints`.
        subtree: only keys starting with this are replicated ("" for all).
        timeout: seconds of silence after which a server counts as dead.
        resend: seconds after which an update the server has not published back is resent.
        limits: what a server's message may hold.
        on_sync: called with the server and the sequence each time a snapshot is loaded.
        curve: (the server's public key, our public key, our secret key), Z85, to reach
            servers started with ``curve=``: every Clone connection is then CURVE-encrypted.

    Example:
        with CloneClient(["tcp://10.0.0.1:5556", "tcp://10.0.0.2:5566"]) as config:
            config.wait_synced(timeout=5)
            config.set("/workers/count", b"8")
            for change in config.watch("/workers/"):
                print(change.key, change.value)
    """

    def __init__(
        self,
        servers: str | ServerEndpoints | Sequence[str | ServerEndpoints],
        subtree: str = "",
        *,
        timeout: float = 2.0,
        resend: float = 1.0,
        limits: Limits = DEFAULT_LIMITS,
        on_sync: Callable[[ServerEndpoints, int], None] | None = None,
        curve: tuple[str, str, str] | None = None,
    ) -> None:
        self._security = curve_options(client=curve)
        if isinstance(servers, (str, ServerEndpoints)):
            servers = [servers]
        self.servers = [ServerEndpoints.from_base(s) for s in servers]
        if not self.servers:
            raise ValueError("no server given")
        self.subtree, self.timeout, self.resend = subtree, timeout, resend
        self.limits, self.on_sync = limits, on_sync
        self.sequence = 0
        self.server: ServerEndpoints | None = None
        self.syncs = 0
        self._map: dict[str, bytes] = {}
        self._watches: set[Watch] = set()
        self._unconfirmed: OrderedDict[bytes, list] = (
            OrderedDict()
        )  # uuid -> [frames, sent, n]
        self._shadowed: dict[
            str, int
        ] = {}  # key -> how many of our updates are unconfirmed
        self._gave_up = False
        self._all_confirmed = _Flag()
        self._all_confirmed.set()
        self._synced = _Flag()
        self._closed = False
        self._pub = Socket("PUB", linger=0, **self._security)
        self._subs = []
        self._heard = [False] * len(self.servers)
        for server in self.servers:
            self._pub.connect(server.collector)
            sub = Socket("SUB", linger=0, rcvhwm=100_000, maxmsgsize=limits.max_message,
                         **self._security)
            sub.subscribe(subtree.encode())
            sub.subscribe(HUGZ.encode())
            sub.connect(server.publisher)
            self._subs.append(sub)
        self._agent = spawn(self._run)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.server.snapshot if self.server else "unsynced"
        return f"<CloneClient {len(self._map)} keys, sequence {self.sequence}, {where}>"

    # ------------------------------------------------------------------ reading
    @property
    def synced(self) -> bool:
        """Whether the client is following a server now."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until the client has a snapshot and follows a server; False on timeout.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            True once synced; False if the timeout expired first.
        """
        return self._synced.wait(timeout)

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        """The value of ``key``, or ``default``.

        Args:
            key: the key.
            default: returned when the key is not in the map.

        Returns:
            the key's value in this client's copy of the map, or ``default``.
        """
        return self._map.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def __len__(self) -> int:
        return len(self._map)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._map))

    def items(self) -> list[tuple[str, bytes]]:
        """Every ``(key, value)``, in no particular order."""
        return list(self._map.items())

    def snapshot(self) -> dict[str, bytes]:
        """A copy of the map."""
        return dict(self._map)

    def watch(self, prefix: str = "") -> Watch:
        """Collect the changes to keys starting with ``prefix`` from now on.

        Args:
            prefix: the keys to watch; empty watches every key.

        Returns:
            a `Watch`: iterate over it or call its ``get``; close it when done.
        """
        w = Watch(prefix, self._watches.discard)
        self._watches.add(w)
        return w

    # ------------------------------------------------------------------ writing
    def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        """Set ``key`` everywhere (an empty value deletes it); with ``ttl``, the server deletes
        it after that many seconds. The local map changes at once; the server's order wins.

        Args:
            key: the key (within the client's subtree).
            value: the new value; a str is UTF-8 encoded.
            ttl: seconds after which the server deletes the key; None keeps it.

        Raises:
            ValueError: the key is empty, reserved or too long, the value too long, or the
                ttl not a positive number of seconds within the limit.
        """
        body = value.encode() if isinstance(value, str) else bytes(value)
        key_b = key.encode()
        if not key or key in RESERVED_KEYS or len(key_b) > self.limits.max_key:
            raise ValueError(f"bad key {key[:40]!r}: empty, reserved or too long")
        if len(body) > self.limits.max_value:
            raise ValueError(
                f"value of {len(body)} bytes (limit {self.limits.max_value})"
            )
        props = {}
        if ttl is not None:
            if not (
                isinstance(ttl, (int, float))
                and math.isfinite(ttl)
                and 0 < ttl <= self.limits.max_ttl
            ):
                raise ValueError(f"bad ttl {ttl!r}")
            props["ttl"] = format_ttl(ttl)
        if self._closed:
            raise SocketClosed("the client was closed")
        msg = KVMsg(key, 0, _uuid.uuid4().bytes, props, body)
        frames = msg.encode()
        self._pub.send_multipart(frames)
        if key.startswith(self.subtree):  # we will see it published
            self._unconfirmed[msg.uuid] = [frames, monotonic(), 0, key]
            self._shadowed[key] = self._shadowed.get(key, 0) + 1
            self._all_confirmed.clear()
            self._apply(key, body or None, 0)

    def delete(self, key: str) -> None:
        """Delete ``key`` everywhere.

        Args:
            key: the key.
        """
        self.set(key, b"")

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every update of this client under its subtree has been published by a
        server (or given up on after several resends); False on timeout.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            True once every update was published (or given up on); False on timeout.
        """
        return self._all_confirmed.wait(timeout)

    def close(self) -> None:
        """Stop following, close the sockets, end the watches."""
        if self._closed:
            return
        self._closed = True
        if self._agent is not current():
            self._agent.kill(block=False)
        for sock in (self._pub, *self._subs):
            sock.close(linger=0)
        for w in list(self._watches):
            w.close()
        self._synced.clear()

    # ------------------------------------------------------------------ the agent
    def _apply(self, key: str, value: bytes | None, sequence: int) -> None:
        old = self._map.get(key)
        if value is None:
            self._map.pop(key, None)
        else:
            self._map[key] = value
        if old != value:
            change = Change(key, value, sequence)
            for w in list(self._watches):
                if key.startswith(w.prefix):
                    w._queue.put_nowait(change)

    def _run(self) -> None:
        i = 0
        while True:
            if self._sync(i):
                while self._follow(i):  # True: resync with the same server
                    if not self._sync(i):
                        break
            self._synced.clear()
            self.server = None
            i = (i + 1) % len(self.servers)

    def _sync(self, i: int) -> bool:
        server, sub, timeout = self.servers[i], self._subs[i], self.timeout
        self._synced.clear()
        if _drain(sub):
            self._heard[i] = True
        if not self._heard[i]:
            poller = Poller()
            poller.register(sub, POLLIN)
            if not poller.poll(timeout):
                log.info("clone client: no HUGZ from %s", server.snapshot)
                return False
            self._heard[i] = True
            _drain(sub)
        fresh: dict[str, bytes] = {}
        applied: list[bytes] = []  # UUIDs of the updates in the snapshot
        with Socket("DEALER", linger=0, maxmsgsize=self.limits.max_message,
                    **self._security) as dealer:
            dealer.connect(server.snapshot)
            dealer.send_multipart(encode_icanhaz(self.subtree))
            give_up, ask_again = monotonic() + 2 * timeout, monotonic() + timeout / 4
            while True:
                try:
                    frames = dealer.recv_multipart(
                        timeout=max(0.0, min(give_up, ask_again) - monotonic())
                    )
                except Timeout:
                    if monotonic() >= give_up:
                        log.info("clone client: no snapshot from %s", server.snapshot)
                        return False
                    dealer.send_multipart(encode_icanhaz(self.subtree))
                    ask_again = monotonic() + timeout / 4
                    continue
                try:
                    msg = decode_kvmsg(frames, self.limits)
                except BadMessage as exc:
                    log.warning(
                        "clone client: dropped a bad snapshot message: %s", exc.reason
                    )
                    continue
                give_up = monotonic() + 2 * timeout
                if msg.key == KTHXBAI:
                    if msg.body == self.subtree.encode():
                        break
                    log.warning(
                        "clone client: snapshot for another subtree %r", msg.body[:40]
                    )
                elif msg.key.startswith(self.subtree) and msg.body:
                    fresh[msg.key] = msg.body
                    applied.append(msg.uuid)
        for uuid in applied:  # our updates the server has: confirmed
            entry = self._unconfirmed.pop(uuid, None)
            if entry is not None:
                self._unshadow(entry[3])
        self._load(fresh, msg.sequence, server)
        return True

    def _load(
        self, fresh: dict[str, bytes], sequence: int, server: ServerEndpoints
    ) -> None:
        shadowed = (
            self._shadowed
        )  # our own unconfirmed values stay until the server has them
        for key in [k for k in self._map if k not in fresh and k not in shadowed]:
            self._apply(key, None, sequence)
        for key, value in fresh.items():
            if key not in shadowed:
                self._apply(key, value, sequence)
        self._gave_up = False
        self.sequence, self.server = sequence, server
        self.syncs += 1
        log.info(
            "clone client: %d keys at sequence %d from %s",
            len(fresh),
            sequence,
            server.snapshot,
        )
        for entry in self._unconfirmed.values():
            entry[2] = 0
        self._resend(monotonic(), everything=True)
        self._synced.set()
        if self.on_sync is not None:
            try:
                self.on_sync(server, sequence)
            except Exception:
                log.exception("clone client: the on_sync callback failed")

    def _follow(self, i: int) -> bool:
        """Apply the server's updates; False when it fell silent, True to sync again."""
        sub, timeout, full = self._subs[i], self.timeout, self.subtree == ""
        expiry = monotonic() + timeout
        while True:
            now = monotonic()
            due = expiry
            if self._unconfirmed:
                due = min(due, next(iter(self._unconfirmed.values()))[1] + self.resend)
            try:
                frames = sub.recv_multipart(timeout=max(0.0, due - now))
            except Timeout:
                now = monotonic()
                if now >= expiry:
                    log.warning(
                        "clone client: %s silent for %gs: failing over",
                        self.servers[i].snapshot,
                        timeout,
                    )
                    return False
                self._resend(now)
                if self._gave_up:
                    return True
                continue
            expiry = monotonic() + timeout
            try:
                msg = decode_kvmsg(frames, self.limits)
            except BadMessage as exc:
                log.warning("clone client: dropped a bad update: %s", exc.reason)
                continue
            if msg.key == HUGZ:
                if full and msg.sequence > self.sequence:
                    log.warning(
                        "clone client: missed updates up to %d: syncing again",
                        msg.sequence,
                    )
                    return True
                continue
            if msg.sequence <= self.sequence:
                continue
            if full and msg.sequence != self.sequence + 1:
                log.warning(
                    "clone client: missed updates %d..%d: syncing again",
                    self.sequence + 1,
                    msg.sequence - 1,
                )
                return True
            self.sequence = msg.sequence
            if self._unconfirmed.pop(msg.uuid, None) is not None:
                self._unshadow(msg.key)
                if not self._unconfirmed:
                    self._all_confirmed.set()
            if msg.key.startswith(self.subtree) and msg.key not in self._shadowed:
                self._apply(msg.key, msg.body or None, msg.sequence)
            if self._gave_up:
                return True  # our map may hold a value no server has: start afresh

    def _resend(self, now: float, everything: bool = False) -> None:
        """Send again the updates not published back within ``resend`` seconds (or all)."""
        pending = self._unconfirmed
        due = []
        for uuid, entry in pending.items():
            if not everything and entry[1] + self.resend > now:
                break  # oldest first: the rest are younger
            due.append((uuid, entry))
        for uuid, entry in due:
            del pending[uuid]
            if entry[2] >= _MAX_RESENDS:
                log.info(
                    "clone client: update %s of %r never came back; giving up",
                    uuid.hex(),
                    entry[3],
                )
                self._unshadow(entry[3])
                self._gave_up = True
                continue
            entry[1], entry[2] = now, entry[2] + 1
            self._pub.send_multipart(entry[0])
            pending[uuid] = entry  # to the back: sent most recently
        if not pending:
            self._all_confirmed.set()

    def _unshadow(self, key: str) -> None:
        n = self._shadowed.get(key, 0) - 1
        if n > 0:
            self._shadowed[key] = n
        else:
            self._shadowed.pop(key, None)


def _drain(sock: Socket) -> int:
    """Discard what ``sock`` has queued; return how many messages."""
    n = 0
    try:
        while True:
            sock.recv_multipart(timeout=0)
            n += 1
    except Timeout:
        return n
