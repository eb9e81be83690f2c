"""I/O readiness: the dhagas one poll makes ready run in one batch, before the next poll."""

from __future__ import annotations

import dhaga
from dhaga import net
from dhaga.testing import settle


def _readers(n: int):
    pairs = [net.socketpair() for _ in range(n)]
    got: list = []

    def reader(i, sock):
        got.append((i, sock.recv(16)))

    ds = [dhaga.spawn(reader, i, a) for i, (a, _) in enumerate(pairs)]
    settle()  # every reader is parked in recv
    return pairs, ds, got


def _all_ready_then_join(foreign_end, pairs, ds) -> None:
    """Make a foreign descriptor and every reader's readable, then wait for the readers."""
    foreign_end.send(b"f")
    for _, b in pairs:
        b.send(b"x")
    # One drain wakes the top level too: it must find every reader done by then.
    dhaga.joinall(ds, timeout=5)


def test_one_poll_wakes_every_ready_reader_and_none_is_reported_twice():
    sched = dhaga.get_scheduler()
    loop = sched.loop
    real = loop.__dict__.get("_process_events")  # the scheduler's: what each poll reported
    assert real is not None and real in (sched._after_poll, sched._after_epoll)
    polls: list[list[int]] = []

    def counting(event_list):
        # epoll's own (fd, events) pairs, or the selector's (key, events) on other selectors
        polls.append([k if type(k) is int else k.fd for k, _ in event_list])
        real(event_list)

    pairs, ds, got = _readers(20)
    # A plain loop callback made ready by the same poll: it runs with the poll's other
    # readiness callbacks, so before any woken reader (they run in one batch after them all).
    fa, fb = net.socketpair()
    seen_by_callback: list[int] = []

    def foreign():
        sched.loop.remove_reader(fa.fileno())
        seen_by_callback.append(len(got))

    sched.loop.add_reader(fa.fileno(), foreign)
    loop._process_events = counting
    try:
        _all_ready_then_join(fb, pairs, ds)
    finally:
        loop._process_events = real
    assert sorted(got) == [(i, b"x") for i in range(20)]
    reader_fds = {a.fileno() for a, _ in pairs}
    reported = [fd for p in polls for fd in p if fd in reader_fds]
    # Every reader's descriptor reported once: each woken reader ran, and read, before the
    # loop polled again (a level-triggered poll would otherwise report it a second time).
    assert sorted(reported) == sorted(reader_fds)
    first = next(i for i, p in enumerate(polls) if reader_fds & set(p))
    assert reader_fds <= set(polls[first])  # the sends all landed before that poll
    assert fa.fileno() in polls[first] and seen_by_callback == [0]
    fa.close()
    fb.close()
    for a, b in pairs:
        a.close()
        b.close()


def test_readers_woken_by_readiness_all_run_on_both_loops(each_loop):
    pairs, ds, got = _readers(50)
    for _, b in reversed(pairs):
        b.send(b"y")
    dhaga.joinall(ds, timeout=5)
    assert sorted(got) == [(i, b"y") for i in range(50)]
    for a, b in pairs:
        a.close()
        b.close()



def test_a_failing_direct_readiness_callback_is_reported_and_the_loop_goes_on():
    # Readiness callbacks the scheduler calls straight from a poll's events (the descriptor
    # waits' ReadySlots) report a failure to the loop's exception handler, as asyncio's
    # handles do, and every other event of that poll is still delivered.
    from dhaga._core.parking import ReadySlots

    sched = dhaga.get_scheduler()
    loop = sched.loop
    reported = []
    old_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda lp, ctx: reported.append(ctx["exception"]))

    class Broken(ReadySlots):
        __slots__ = ("fd",)

        def drop_reader(self):  # nobody waits: asked to drop its registration, and fails
            loop.remove_reader(self.fd)
            raise RuntimeError("drop failed")

    fa, fb = net.socketpair()
    pairs, ds, got = _readers(3)
    broken = Broken(sched)
    broken.fd = fa.fileno()
    loop.add_reader(fa.fileno(), broken.on_readable)
    try:
        _all_ready_then_join(fb, pairs, ds)
    finally:
        loop.set_exception_handler(old_handler)
    assert sorted(got) == [(i, b"x") for i in range(3)]
    assert [str(e) for e in reported] == ["drop failed"]
    for s in (fa, fb, *[x for p in pairs for x in p]):
        s.close()
