"""Binary Star: the state machine's rules as a table, and a pair of servers in one process
that decide who is active, fail over on a client's vote, and stop on a split brain."""

from __future__ import annotations

import time

import pytest
from mq_helpers import until

import dhaga
from dhaga import mq
from dhaga.mq.bstar import BinaryStar, Event, State, transition
from dhaga.mq.clone import free_base
from dhaga.mq.errors import SplitBrain

P, B, A, S = State.PRIMARY, State.BACKUP, State.ACTIVE, State.PASSIVE
E = Event

# (state, event, peer expired) -> (new state, request accepted)
RULES = [
    (P, E.PEER_BACKUP, False, A, True),
    (P, E.PEER_ACTIVE, False, S, True),
    (P, E.PEER_PRIMARY, False, P, True),
    (P, E.PEER_PASSIVE, False, P, True),
    (P, E.CLIENT_REQUEST, False, P, False),  # the backup may be active: wait
    (P, E.CLIENT_REQUEST, True, A, True),
    (B, E.PEER_ACTIVE, False, S, True),
    (B, E.PEER_PRIMARY, False, B, True),
    (B, E.PEER_PASSIVE, False, B, True),
    (B, E.CLIENT_REQUEST, False, B, False),
    (B, E.CLIENT_REQUEST, True, B, False),  # a backup never starts active on its own
    (A, E.PEER_PRIMARY, False, A, True),
    (A, E.PEER_BACKUP, False, A, True),
    (A, E.PEER_PASSIVE, False, A, True),
    (A, E.CLIENT_REQUEST, False, A, True),
    (A, E.CLIENT_REQUEST, True, A, True),
    (S, E.PEER_PRIMARY, False, A, True),  # the peer restarts: take over
    (S, E.PEER_BACKUP, False, A, True),
    (S, E.PEER_ACTIVE, False, S, True),
    (S, E.CLIENT_REQUEST, False, S, False),  # the active is alive: no failover
    (S, E.CLIENT_REQUEST, True, A, True),  # silent for the timeout and a client asks
]


@pytest.mark.parametrize("state,event,expired,new,accept", RULES)
def test_transition_table(state, event, expired, new, accept):
    assert transition(state, event, expired) == (new, accept)


@pytest.mark.parametrize("state,event", [(A, E.PEER_ACTIVE), (S, E.PEER_PASSIVE)])
def test_split_brain_is_fatal(state, event):
    with pytest.raises(SplitBrain) as info:
        transition(state, event, False)
    assert info.value.state is state and info.value.peer is event


def test_every_state_and_event_has_a_rule():
    for state in State:
        for event in Event:
            for expired in (False, True):
                if (state, event) in ((A, E.PEER_ACTIVE), (S, E.PEER_PASSIVE)):
                    continue
                new, accept = transition(state, event, expired)
                assert isinstance(new, State) and isinstance(accept, bool)


class Pair:
    """A primary and a backup in this process, recording their hook calls."""

    def __init__(self, timeout: float = 0.3, **options) -> None:
        self.calls: list[tuple[str, str]] = []
        self.timeout = timeout
        a, b = free_base(count=1), free_base(count=1)
        self.primary = self._make(True, a, b, options)
        self.backup = self._make(False, b, a, options)

    def _make(self, primary: bool, local: str, remote: str, options: dict) -> BinaryStar:
        name = "primary" if primary else "backup"
        return BinaryStar(
            primary,
            local,
            remote,
            timeout=self.timeout,
            on_active=lambda: self.calls.append((name, "active")),
            on_passive=lambda: self.calls.append((name, "passive")),
            on_fatal=lambda exc: self.calls.append((name, "fatal")),
            **options,
        )

    def start(self) -> None:
        self.backup.start()
        self.primary.start()

    def close(self) -> None:
        self.primary.close()
        self.backup.close()


@pytest.fixture
def pair():
    p = Pair()
    yield p
    p.close()


def test_pair_decides_primary_active_backup_passive(pair):
    pair.start()
    until(lambda: pair.primary.state is A and pair.backup.state is S)
    assert sorted(pair.calls) == [("backup", "passive"), ("primary", "active")]
    assert pair.primary.vote() is True
    assert (
        pair.backup.vote() is False
    )  # the primary is alive: the backup refuses clients


def test_failover_on_a_client_vote_after_the_peer_falls_silent(pair):
    pair.start()
    until(lambda: pair.backup.state is S)
    pair.primary.close()  # the primary dies
    killed = time.monotonic()
    assert pair.backup.vote() is False  # not silent long enough yet
    until(lambda: pair.backup.peer_expired, timeout=5)
    assert (
        time.monotonic() - killed < 2 * pair.timeout + 0.5
    )  # expiry is ~timeout after the last heartbeat
    assert pair.backup.vote() is True
    assert pair.backup.state is A
    assert ("backup", "active") in pair.calls


def test_passive_alone_never_takes_over_without_a_vote(pair):
    pair.start()
    until(lambda: pair.backup.state is S)
    pair.primary.close()
    until(lambda: pair.backup.peer_expired, timeout=5)
    dhaga.sleep(0)
    assert pair.backup.state is S  # silence alone does not make it active


def test_lone_primary_goes_active_on_a_vote_once_the_timeout_passed():
    star = BinaryStar(True, "tcp://127.0.0.1:*", "tcp://127.0.0.1:9", timeout=0.2)
    star.start()
    try:
        assert star.vote() is False  # just started: the backup might be active
        until(lambda: star.peer_expired, timeout=5)
        assert star.vote() is True and star.state is A
    finally:
        star.close()


def test_lone_backup_never_serves():
    star = BinaryStar(False, "tcp://127.0.0.1:*", "tcp://127.0.0.1:9", timeout=0.1)
    star.start()
    try:
        until(lambda: star.peer_expired, timeout=5)
        assert star.vote() is False and star.state is B
    finally:
        star.close()


def test_dual_actives_stop_the_server(dhaga_log):
    star = BinaryStar(True, "tcp://127.0.0.1:*", "tcp://127.0.0.1:9", timeout=0.2)
    fake_peer = mq.Socket(mq.PUB, linger=0)
    try:
        star.remote = fake_peer.bind("tcp://127.0.0.1:*")
        star.start()
        until(lambda: star.peer_expired, timeout=5)
        assert star.vote() is True and star.state is A

        def claim_active() -> bool:  # a malformed state message, then "I am active too"
            fake_peer.send(b"bogus")
            fake_peer.send(b"3")
            return star.failed is not None

        until(claim_active, timeout=5)
        assert isinstance(star.failed, SplitBrain)
        assert star.wait_stopped(timeout=1)
        assert star.vote() is False
        assert "dual actives" in dhaga_log.text
        assert "bad state message" in dhaga_log.text
    finally:
        star.close()
        fake_peer.close()


def test_pair_over_curve_decides_and_a_plain_peer_hears_nothing():
    public, secret = mq.curve_keypair()  # the pair shares one key pair, as Clone's servers do
    pair = Pair(
        pub_options={"curve_server": True, "curve_publickey": public, "curve_secretkey": secret},
        sub_options={"curve_serverkey": public, "curve_publickey": public,
                     "curve_secretkey": secret},
    )
    try:
        pair.start()
        until(lambda: pair.primary.state is A and pair.backup.state is S)
        # Someone without the keys subscribes to the primary's state channel: refused at the
        # handshake, so it never hears a state, while the pair goes on deciding.
        eavesdropper = mq.Socket("SUB", linger=0, rcvtimeo=int(3 * pair.timeout * 1000))
        eavesdropper.subscribe(b"")
        eavesdropper.connect(pair.primary.local)
        with pytest.raises(dhaga.Timeout):
            eavesdropper.recv()
        eavesdropper.close()
        assert pair.primary.state is A and pair.backup.state is S
    finally:
        pair.close()
