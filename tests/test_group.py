"""joinall, iwait and Group: waiting on many dhagas, structured concurrency."""

from __future__ import annotations

import pytest

import dhaga
from dhaga import Killed, Timeout
from dhaga.sync import Event, Queue
from dhaga.testing import settle

pytestmark = pytest.mark.usefixtures("each_loop")


def test_joinall_waits_for_all_and_returns_them_in_order():
    gates = [Event() for _ in range(3)]
    ds = [dhaga.spawn(g.wait) for g in gates]
    for g in reversed(gates):
        dhaga.spawn(g.set)
    assert dhaga.joinall(ds) == ds and all(d.done() for d in ds)


def test_joinall_timeout_raises_timeout():
    ev = Event()
    ds = [dhaga.spawn(ev.wait), dhaga.spawn(lambda: 1)]
    with pytest.raises(Timeout):
        dhaga.joinall(ds, timeout=0.01)
    ev.set()
    dhaga.joinall(ds)


def test_joinall_raise_error_raises_first_failure_at_once():
    ev = Event()
    slow = dhaga.spawn(ev.wait)

    def fail():
        raise KeyError("first")

    with pytest.raises(KeyError, match="first"):
        dhaga.joinall([slow, dhaga.spawn(fail)], raise_error=True)
    assert not slow.done()  # it did not wait for the slow one
    ev.set()
    slow.join()


def test_joinall_without_raise_error_keeps_failures_in_handles(dhaga_log):
    ds = [dhaga.spawn(lambda: 1 / 0), dhaga.spawn(lambda: 2)]
    dhaga.joinall(ds)
    assert isinstance(ds[0].exception(), ZeroDivisionError) and ds[1].result() == 2


def test_iwait_yields_in_finishing_order():
    gates = {name: Event() for name in "abc"}
    ds = {name: dhaga.spawn(lambda n=name: (gates[n].wait(), n)[1]) for name in "abc"}
    order = []

    def release():
        for name in "cab":
            gates[name].set()
            settle()

    dhaga.spawn(release)
    for d in dhaga.iwait(ds.values()):
        order.append(d.result())
    assert order == ["c", "a", "b"]


def test_iwait_already_finished_come_first_and_timeout_raises():
    done = dhaga.spawn(lambda: "done")
    done.join()
    ev = Event()
    pending = dhaga.spawn(ev.wait)
    it = dhaga.iwait([pending, done], timeout=0.02)
    assert next(it) is done
    with pytest.raises(Timeout):
        next(it)
    ev.set()
    pending.join()


def test_group_waits_for_all_members():
    q = Queue()
    with dhaga.Group() as g:
        for i in range(5):
            g.spawn(lambda i=i: ([dhaga.sleep(0) for _ in range(i)], q.put(i)))
    assert sorted(q.get() for _ in range(5)) == list(range(5))
    assert len(g) == 0


def test_group_first_failure_kills_the_rest_and_is_raised():
    killed = []

    def victim():
        try:
            Event().wait()
        except Killed:
            killed.append(True)
            raise

    def failing():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        with dhaga.Group() as g:
            victims = [g.spawn(victim) for _ in range(3)]
            g.spawn(failing)
    assert killed == [True] * 3 and all(v.killed() for v in victims)
    assert g.failure is not None


def test_group_body_exception_kills_members_and_propagates():
    with pytest.raises(KeyError):
        with dhaga.Group() as g:
            member = g.spawn(Event().wait)
            raise KeyError("body")
    assert member.killed()


def test_group_owner_killed_while_waiting_kills_members():
    members = []

    def owner():
        with dhaga.Group() as g:
            members.append(g.spawn(Event().wait))
            members.append(g.spawn(Event().wait))

    d = dhaga.spawn(owner)
    settle()
    d.kill()
    assert d.killed()
    assert all(m.killed() for m in members)


def test_group_failure_is_not_logged_as_unjoined(dhaga_log):
    import gc

    with pytest.raises(ZeroDivisionError):
        with dhaga.Group() as g:
            g.spawn(lambda: 1 / 0)
    del g
    gc.collect()
    assert "never joined" not in dhaga_log.text


def test_group_join_timeout_and_kill():
    g = dhaga.Group()
    g.spawn(Event().wait)
    assert g.join(timeout=0.01) is False
    g.kill()
    assert len(g) == 0 and g.join() is True
