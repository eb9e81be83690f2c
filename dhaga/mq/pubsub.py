"""Publish-subscribe strategies: PUB, XPUB, SUB and XSUB, with prefix subscriptions.

How this works
--------------
Subscriptions travel upstream as one-frame messages, ``b"\\x01" + topic`` to subscribe and
``b"\\x00" + topic`` to cancel (ZMTP 3.0's form; a session turns them into SUBSCRIBE/CANCEL
commands for a 3.1 peer, and back). A publisher reads them as soon as they arrive and keeps
each pipe's set of topics: ``send`` queues a message on every pipe with a topic that prefixes
its first frame, and drops it for a pipe that is full (a publisher never blocks). A subscriber
filters again on receipt (its subscriptions may have changed since). XPUB hands the
subscriptions to the application (the first subscription to a topic and the last cancel, or
every subscription with ``xpub_verbose``); XSUB sends subscriptions written as messages.

This module must not know about transports, sessions, the wire or the scheduler.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .pipe import Message, Pipe
from .routing import Strategy

__all__ = ["Pub", "XPub", "Sub", "XSub", "matches"]


def matches(topic: bytes, subs: dict[bytes, Any], lengths: set[int]) -> bool:
    """True if a subscription in ``subs`` (whose lengths are ``lengths``) prefixes ``topic``."""
    for n in lengths:
        if topic[:n] in subs:
            return True
    return False


class Pub(Strategy):
    """PUB: every message to every subscriber whose subscription prefixes it; full peers drop."""

    kind = "PUB"
    can_send_kind = True
    can_recv_kind = False

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self.topics: dict[bytes, set[Pipe]] = {}
        self.upstream: deque[Message] = deque()

    def attach(self, pipe: Pipe) -> bool:
        pipe.owner = self
        self.pipes.append(pipe)
        if pipe.inc.q:
            self._readable(pipe)
        return True

    def connected(self, pipe: Pipe) -> None:
        self._forget(pipe)  # a reconnected subscriber sends its subscriptions again

    def terminated(self, pipe: Pipe) -> None:
        pipe.alive = False
        if pipe in self.pipes:
            self.pipes.remove(pipe)
        self._forget(pipe)

    def _forget(self, pipe: Pipe) -> None:
        for topic in list(pipe.subs):
            self._cancel(pipe, topic)

    def _readable(self, pipe: Pipe) -> None:
        q = pipe.inc.q
        while q:
            msg = pipe.read()
            first = msg[0]
            if first[:1] == b"\x01":
                self._subscribe(pipe, first[1:])
            elif first[:1] == b"\x00":
                self._cancel(pipe, first[1:])
            else:
                self._upstream_message(msg)

    def _subscribe(self, pipe: Pipe, topic: bytes) -> None:
        new = topic not in pipe.subs
        if new:
            pipe.subs[topic] = None
            pipe.sublens.add(len(topic))
        holders = self.topics.setdefault(topic, set())
        first = not holders
        holders.add(pipe)
        self._notify(b"\x01" + topic, first)

    def _cancel(self, pipe: Pipe, topic: bytes) -> None:
        if topic not in pipe.subs:
            return
        del pipe.subs[topic]
        pipe.sublens = {len(t) for t in pipe.subs}
        holders = self.topics.get(topic)
        last = False
        if holders is not None:
            holders.discard(pipe)
            if not holders:
                del self.topics[topic]
                last = True
        if last:
            self._notify(b"\x00" + topic, True)

    def _notify(self, frame: bytes, unique: bool) -> None:
        """PUB keeps subscriptions to itself; XPUB overrides this."""

    def _upstream_message(self, msg: Message) -> None:
        """PUB ignores what its subscribers send; XPUB overrides this."""

    def send(self, msg: Message) -> bool:
        topic = msg[0]
        copy = False  # each peer gets its own list: an inproc receiver owns what it gets
        for pipe in self.pipes:
            subs = pipe.subs
            if subs and matches(topic, subs, pipe.sublens) and pipe.writable():
                pipe.write(list(msg) if copy else msg)
                copy = True
        return True

    def can_send(self) -> bool:
        return True

    def _writable(self, pipe: Pipe) -> None:
        pass  # nobody waits for room: full subscribers are skipped


class XPub(Pub):
    """XPUB: a PUB that receives its subscribers' subscriptions as messages."""

    kind = "XPUB"
    can_recv_kind = True

    def _notify(self, frame: bytes, unique: bool) -> None:
        if unique or (frame[0] == 1 and self.sock._xpub_verbose):
            self._queue([frame])

    def _upstream_message(self, msg: Message) -> None:
        self._queue(msg)

    def _queue(self, msg: Message) -> None:
        self.upstream.append(msg)
        if len(self.upstream) == 1:
            self.sock._signal_in()

    def recv(self) -> Message | None:
        if self.upstream:
            return self.upstream.popleft()
        return None

    def can_recv(self) -> bool:
        return bool(self.upstream)


class Sub(Strategy):
    """SUB: fair-queues what its publishers send, keeping what matches its subscriptions."""

    kind = "SUB"
    can_send_kind = False

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self.subs: dict[bytes, int] = {}
        self.sublens: set[int] = set()

    def attach(self, pipe: Pipe) -> bool:
        super().attach(pipe)
        self._resend(pipe)
        return True

    def connected(self, pipe: Pipe) -> None:
        self._resend(pipe)

    def _resend(self, pipe: Pipe) -> None:
        """Queue every subscription on ``pipe``, replacing the ones still waiting there."""
        q = pipe.outc.q
        kept = [m for m in q if not _is_subscription(m)]
        q.clear()
        q.extend(kept)
        for topic in self.subs:
            pipe.write([b"\x01" + topic])

    def subscribe(self, topic: bytes) -> None:
        self.subs[topic] = self.subs.get(topic, 0) + 1
        self.sublens.add(len(topic))
        self._to_all([b"\x01" + topic], True)

    def unsubscribe(self, topic: bytes) -> None:
        count = self.subs.get(topic)
        if count is None:
            return
        if count > 1:
            self.subs[topic] = count - 1
            return
        del self.subs[topic]
        self.sublens = {len(t) for t in self.subs}
        self._to_all([b"\x00" + topic], True)

    def _to_all(self, msg: Message, force: bool) -> None:
        copy = False
        for pipe in self.pipes:
            if force or pipe.writable():
                pipe.write(list(msg) if copy else msg)
                copy = True

    def _wanted(self, msg: Message) -> bool:
        return matches(msg[0], self.subs, self.sublens)

    def recv(self) -> Message | None:
        while True:
            got = self._fq_recv()
            if got is None:
                return None
            if self._wanted(got[1]):
                return got[1]

    def can_recv(self) -> bool:
        ready = self.ready
        while ready:
            q = ready[0].inc.q
            if q and self._wanted(q[0]):
                return True
            self._fq_recv()  # drop what no subscription wants
        return False


class XSub(Sub):
    """XSUB: keeps everything it receives; sends subscriptions (and other messages) upstream."""

    kind = "XSUB"
    can_send_kind = True

    def _wanted(self, msg: Message) -> bool:
        return True

    def send(self, msg: Message) -> bool:
        first = msg[0]
        if len(msg) == 1 and first[:1] == b"\x01":
            self.subscribe(first[1:])
        elif len(msg) == 1 and first[:1] == b"\x00":
            self.unsubscribe(first[1:])
        else:
            self._to_all(msg, False)
        return True

    def can_send(self) -> bool:
        return True

    def _writable(self, pipe: Pipe) -> None:
        pass


def _is_subscription(msg: Message) -> bool:
    return len(msg) == 1 and msg[0][:1] in (b"\x00", b"\x01")
