"""A Clone server's hashmap: sequence numbers, TTL expiry, subtree snapshots, the pending list.

How this works
--------------
The active server numbers every update (`Store.apply`) and keeps, per key, the last update
and when it expires. A passive server stores the active's updates as they are numbered
(`Store.put`). Both remember the UUIDs of recent updates (`RecentIds`), so that an update a
client sends twice (it resends what it has not seen published) is applied once, and the
passive keeps client updates it has not yet seen the active publish (`Pending`): when it
takes over, it applies those, so updates the dead active took with it are not lost.

Time is passed in by the caller: this module must not know about clocks, sockets or the
scheduler.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

from .protocol import KVMsg

__all__ = ["Pending", "RecentIds", "Store"]


class RecentIds:
    """The last ``size`` UUIDs seen (a bounded set; the oldest are forgotten first)."""

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, uuid: bytes) -> bool:
        return uuid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, uuid: bytes) -> None:
        """Remember ``uuid`` (empty ones are never remembered)."""
        if not uuid:
            return
        self._ids[uuid] = None
        self._ids.move_to_end(uuid)
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)


class Store:
    """The key-value map of one server, with its sequence number.

    Attributes:
        sequence: the number of the last update applied.
        seen: UUIDs of recent updates applied here.
    """

    def __init__(self, seen: RecentIds | None = None) -> None:
        self.sequence = 0
        self.seen = seen if seen is not None else RecentIds()
        self._entries: dict[str, tuple[KVMsg, float | None]] = {}
        self._expiry: list[
            tuple[float, int, str]
        ] = []  # (when, sequence, key), lazily pruned

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> KVMsg | None:
        """The last update of ``key``, or None."""
        entry = self._entries.get(key)
        return entry[0] if entry else None

    def clear(self) -> None:
        """Forget every key (the sequence number and the seen UUIDs stay)."""
        self._entries.clear()
        self._expiry.clear()

    def apply(self, msg: KVMsg, now: float) -> KVMsg:
        """Number a client's update with the next sequence number and store it.

        Returns:
            the update as it must be published.
        """
        numbered = msg.with_sequence(self.sequence + 1)
        self.put(numbered, now)
        return numbered

    def put(self, msg: KVMsg, now: float) -> None:
        """Store an update that already has its sequence number (an empty body deletes)."""
        self.sequence = max(self.sequence, msg.sequence)
        self.seen.add(msg.uuid)
        if not msg.body:
            self._entries.pop(msg.key, None)
            return
        ttl = msg.ttl
        expires = None if ttl is None else now + ttl
        self._entries[msg.key] = (msg, expires)
        if expires is not None:
            heapq.heappush(self._expiry, (expires, msg.sequence, msg.key))

    def expire(self, now: float) -> list[KVMsg]:
        """Delete every key whose TTL has run out, each with a new sequence number.

        Returns:
            the deletions to publish, in order.
        """
        gone = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is None or entry[0].sequence != seq:
                continue  # replaced or deleted since
            del self._entries[key]
            self.sequence += 1
            gone.append(KVMsg(key, self.sequence))
        return gone

    def snapshot(self, subtree: str, now: float) -> list[KVMsg]:
        """The current updates of the keys under ``subtree``, each ``ttl`` turned into the
        seconds it has left (at least 1 ms)."""
        out = []
        for key, (msg, expires) in self._entries.items():
            if key.startswith(subtree):
                if expires is not None:
                    msg = msg.with_ttl(max(round(expires - now, 3), 0.001))
                out.append(msg)
        return out


class Pending:
    """A passive server's client updates that the active has not been seen publishing yet.

    Updates without a UUID cannot be matched with what the active publishes, so they are not
    kept (our clients always send one; RFC 12 says a client SHOULD).
    """

    def __init__(self, seen: RecentIds, size: int = 100_000) -> None:
        self.seen = seen
        self.size = size
        self._held: OrderedDict[bytes, KVMsg] = OrderedDict()
        self.dropped = 0  # updates forgotten because the list was full

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, msg: KVMsg) -> bool:
        """Keep a client's update unless the active already published it (or it is kept).

        Returns:
            True if it was kept.
        """
        if not msg.uuid or msg.uuid in self.seen or msg.uuid in self._held:
            return False
        self._held[msg.uuid] = msg
        if len(self._held) > self.size:
            self._held.popitem(last=False)
            self.dropped += 1
        return True

    def published(self, uuid: bytes) -> None:
        """The active published the update ``uuid``: it is no longer pending."""
        self.seen.add(uuid)
        self._held.pop(uuid, None)

    def take(self) -> list[KVMsg]:
        """Every pending update, oldest first, emptying the list."""
        held = list(self._held.values())
        self._held.clear()
        return held

    def clear(self) -> None:
        self._held.clear()
