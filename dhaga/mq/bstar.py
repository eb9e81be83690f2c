"""Binary Star: a primary and a backup server that agree which of them is active.

How this works
--------------
This is the state machine of the zguide's Binary Star pattern (chapter 4). Each server
publishes its state (one frame, the state's number as ASCII) on a PUB socket every
``timeout / 4`` seconds and whenever it changes, and subscribes to its peer's. A state the
peer announces is an *event* (PEER_PRIMARY ... PEER_PASSIVE); a request from a client is a
*vote* (CLIENT_REQUEST). The rules:

* Both start undecided (PRIMARY, BACKUP). The primary turns active when it hears the backup,
  or when a client asks and the peer has been silent for ``timeout`` (the backup may be
  active after a failover: the primary waits that long before believing it is not). Either
  one turns passive when it hears an active peer. The backup never turns active by itself.
* A passive server turns active only when a client asks and the peer has been silent for
  ``timeout``: it is the clients' votes, not the silence alone, that trigger a failover, so a
  server cut off from both its peer and its clients stays passive (no split brain).
* A passive that hears its peer restarting (PRIMARY or BACKUP) takes over.
* Two actives, or two passives, is a fatal error: the server stops (`SplitBrain`).

`transition` is the pure rule table; `BinaryStar` does the I/O. This module must not know what
the pair serves: the application calls `BinaryStar.vote` for each client request it receives
and serves the request only when that returns True.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from ..scheduler import Dhaga, current, sleep, spawn
from ..sync import Event as _Flag
from .errors import SocketClosed, SplitBrain
from .socket import Socket

__all__ = ["BinaryStar", "Event", "State", "transition"]

log = logging.getLogger("dhaga.mq.bstar")


class State(IntEnum):
    """A server's Binary Star state (the numbers are the wire format)."""

    PRIMARY = 1  #: primary, waiting for its peer
    BACKUP = 2  #: backup, waiting for its peer
    ACTIVE = 3  #: serving clients
    PASSIVE = 4  #: standing by


class Event(IntEnum):
    """What can happen to a server: its peer announces a state, or a client asks."""

    PEER_PRIMARY = 1
    PEER_BACKUP = 2
    PEER_ACTIVE = 3
    PEER_PASSIVE = 4
    CLIENT_REQUEST = 5


def transition(state: State, event: Event, peer_expired: bool) -> tuple[State, bool]:
    """Apply one event to a state, by the guide's rules.

    Args:
        state: our state.
        event: what happened.
        peer_expired: whether the peer has been silent for the failover timeout.

    Returns:
        the new state, and whether a CLIENT_REQUEST may be served (True for peer events).

    Raises:
        SplitBrain: two actives, or two passives.
    """
    if state is State.PRIMARY:
        if event is Event.PEER_BACKUP:
            return State.ACTIVE, True
        if event is Event.PEER_ACTIVE:
            return State.PASSIVE, True
        if event is Event.CLIENT_REQUEST:
            # The backup may be active after a failover: wait until it has been silent.
            return (State.ACTIVE, True) if peer_expired else (state, False)
    elif state is State.BACKUP:
        if event is Event.PEER_ACTIVE:
            return State.PASSIVE, True
        if event is Event.CLIENT_REQUEST:
            return state, False
    elif state is State.ACTIVE:
        if event is Event.PEER_ACTIVE:
            raise SplitBrain("dual actives: both servers are active", state, event)
    elif state is State.PASSIVE:
        if event in (Event.PEER_PRIMARY, Event.PEER_BACKUP):
            return State.ACTIVE, True  # the peer is restarting: take over
        if event is Event.PEER_PASSIVE:
            raise SplitBrain("dual passives: no server would serve", state, event)
        if event is Event.CLIENT_REQUEST:
            return (State.ACTIVE, True) if peer_expired else (state, False)
    return state, True


class BinaryStar:
    """One server of a Binary Star pair.

    Args:
        primary: True for the primary, False for the backup.
        local: endpoint to bind our state publisher to (``tcp://127.0.0.1:*`` picks a port).
        remote: the peer's state publisher, to subscribe to.
        timeout: seconds of peer silence after which a client's vote makes us active
            (the guide's default: 2 s).
        on_active: called (in the dhaga that made the change, before the vote that caused it
            is answered) when we become active.
        on_passive: called when we become passive.
        on_fatal: called with the `SplitBrain` error when the pair splits; we then stop.
        pub_options: socket options of our state publisher (say, CURVE server keys).
        sub_options: socket options of our subscription to the peer's state (say, CURVE
            client keys that name the peer's public key).

    Example:
        star = BinaryStar(True, "tcp://*:5003", "tcp://10.0.0.2:5004", on_active=warm_up)
        star.start()
        while True:
            request = frontend.recv_multipart()
            if star.vote():
                serve(request)
    """

    def __init__(
        self,
        primary: bool,
        local: str,
        remote: str,
        *,
        timeout: float = 2.0,
        on_active: Callable[[], None] | None = None,
        on_passive: Callable[[], None] | None = None,
        on_fatal: Callable[[SplitBrain], None] | None = None,
        pub_options: dict[str, Any] | None = None,
        sub_options: dict[str, Any] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.primary = primary
        self.local, self.remote, self.timeout = local, remote, timeout
        self.on_active, self.on_passive, self.on_fatal = on_active, on_passive, on_fatal
        self._state = State.PRIMARY if primary else State.BACKUP
        self._peer_expiry = 0.0
        self.failed: SplitBrain | None = None
        self._stopped = _Flag()
        self._pub: Socket | None = None
        self._sub: Socket | None = None
        self._dhagas: list[Dhaga] = []
        self._pub_options = dict(pub_options or {})
        self._sub_options = dict(sub_options or {})

    def __repr__(self) -> str:
        return (
            f"<BinaryStar {'primary' if self.primary else 'backup'} {self._state.name}>"
        )

    @property
    def state(self) -> State:
        """Our current state."""
        return self._state

    @property
    def active(self) -> bool:
        """True while this server is the active one of the pair (it serves clients)."""
        return self._state is State.ACTIVE

    @property
    def peer_expired(self) -> bool:
        """Whether the peer has been silent for ``timeout`` seconds."""
        return time.monotonic() >= self._peer_expiry

    def start(self) -> str:
        """Bind, connect and start heartbeating.

        Returns:
            the actual endpoint our state is published on.
        """
        self._pub = Socket("PUB", linger=0, **self._pub_options)
        self.local = self._pub.bind(self.local)
        self._sub = Socket("SUB", linger=0, maxmsgsize=64, **self._sub_options)
        self._sub.subscribe(b"")
        self._sub.connect(self.remote)
        self._peer_expiry = time.monotonic() + self.timeout
        self._dhagas = [spawn(self._heartbeat), spawn(self._listen)]
        return self.local

    def vote(self) -> bool:
        """A client asked to be served: run CLIENT_REQUEST through the state machine.

        Returns:
            True if the request may be served now; False if it must be ignored.
        """
        if self.failed is not None:
            return False
        return self._execute(Event.CLIENT_REQUEST)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until the pair split (see ``failed``) or `close` was called.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            True once stopped; False if the timeout expired first.
        """
        return self._stopped.wait(timeout)

    def close(self) -> None:
        """Stop heartbeating and close the sockets."""
        me = current()
        for d in self._dhagas:
            if d is not me:
                d.kill(block=False)
        for sock in (self._pub, self._sub):
            if sock is not None:
                sock.close(linger=0)
        self._stopped.set()

    # ------------------------------------------------------------------ internals
    def _execute(self, event: Event) -> bool:
        old = self._state
        try:
            new, accept = transition(old, event, self.peer_expired)
        except SplitBrain as exc:
            self._fail(exc)
            return False
        if new is not old:
            self._state = new
            log.info("binary star: %s -> %s on %s", old.name, new.name, event.name)
            self._send_state()
            hook = self.on_active if new is State.ACTIVE else self.on_passive
            if hook is not None:
                try:
                    hook()
                except Exception:
                    log.exception("binary star: the %s hook failed", new.name.lower())
        return accept

    def _fail(self, exc: SplitBrain) -> None:
        log.error(
            "binary star: fatal error in state %s: %s; stopping", self._state.name, exc
        )
        self.failed = exc
        if self.on_fatal is not None:
            try:
                self.on_fatal(exc)
            except Exception:
                log.exception("binary star: the fatal-error hook failed")
        self.close()

    def _send_state(self) -> None:
        if self._pub is not None and not self._pub.closed:
            self._pub.send(str(int(self._state)).encode())

    def _heartbeat(self) -> None:
        while True:
            self._send_state()
            sleep(self.timeout / 4)

    def _listen(self) -> None:
        sub = self._sub
        assert sub is not None
        while True:
            try:
                frames = sub.recv_multipart()
            except SocketClosed:
                return
            if len(frames) != 1 or frames[0] not in (b"1", b"2", b"3", b"4"):
                log.warning("binary star: ignoring a bad state message %r", frames[:2])
                continue
            self._peer_expiry = time.monotonic() + self.timeout
            self._execute(Event(int(frames[0])))
            if self.failed is not None:
                return
