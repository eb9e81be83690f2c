"""Inside a dhaga asyncio reports no running loop; loop code keeps seeing it (the rule in
docs/asyncio-and-tornado.md): libraries that detect async contexts treat dhagas as sync code."""

from __future__ import annotations

import asyncio

import pytest

import dhaga
from dhaga.sync import Event

pytestmark = pytest.mark.usefixtures("each_loop")


def _running_loop_or_none():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def test_no_running_loop_inside_a_dhaga_but_get_event_loop_is_the_schedulers():
    sched = dhaga.get_scheduler()

    def body():
        assert _running_loop_or_none() is None
        dhaga.sleep(0)  # and still none after a switch
        assert _running_loop_or_none() is None
        return asyncio.get_event_loop()

    assert dhaga.spawn(body).result() is sched.loop


def test_loop_code_still_sees_its_running_loop():
    sched = dhaga.get_scheduler()
    seen = []

    async def coro():
        seen.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return await dhaga.spawn(lambda: _running_loop_or_none())

    def body():
        sched.loop.call_soon(lambda: seen.append(_running_loop_or_none()))
        return dhaga.wait(coro())

    assert dhaga.run(body) is None  # the dhaga awaited reported none
    assert seen == [sched.loop, sched.loop]  # the callback and the coroutine saw the loop


def test_done_callbacks_are_loop_code_and_cannot_block():
    box = []

    def cb(_):
        box.append(_running_loop_or_none())
        try:
            Event().wait(0.01)
        except dhaga.BlockingError:
            box.append("blocking refused")

    d = dhaga.spawn(lambda: None)
    d.add_done_callback(cb)
    d.join()
    assert box == [dhaga.get_scheduler().loop, "blocking refused"]


def test_dhagas_inside_asyncio_run():
    async def main():
        loop = asyncio.get_running_loop()
        d = dhaga.spawn(lambda: (_running_loop_or_none(), asyncio.get_event_loop()))
        inside, event_loop = await d
        assert asyncio.get_running_loop() is loop
        return inside, event_loop is loop

    assert asyncio.run(main()) == (None, True)


def test_a_sync_only_guard_accepts_dhagas_and_refuses_coroutines():
    def sync_only():  # what Django's async_unsafe decorator checks
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return "ok"
        raise RuntimeError("You cannot call this from an async context")

    async def coro():
        with pytest.raises(RuntimeError, match="async context"):
            sync_only()
        return await dhaga.spawn(sync_only)

    assert dhaga.run(lambda: dhaga.wait(coro())) == "ok"
