"""asyncio and Tornado both ways: dhagas wait on futures, coroutines await dhagas, @green."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket

import pytest
import tornado.concurrent
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web

import dhaga
from dhaga import Timeout
from dhaga.sync import Event

pytestmark = pytest.mark.usefixtures("each_loop")


def test_wait_on_asyncio_future_set_later():
    loop = dhaga.get_scheduler().loop
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "done")
    assert dhaga.run(dhaga.wait, fut) == "done"


def test_wait_on_coroutine_from_dhaga_and_top_level():
    async def add(a, b):
        await asyncio.sleep(0.001)
        return a + b

    assert dhaga.run(lambda: dhaga.wait(add(1, 2))) == 3
    assert dhaga.wait(add(3, 4)) == 7


def test_wait_on_tornado_future():
    loop = dhaga.get_scheduler().loop
    fut = tornado.concurrent.Future()
    assert fut.get_loop() is loop  # the scheduler's loop is this thread's current loop
    loop.call_soon(fut.set_result, "tornado")
    assert dhaga.wait(fut) == "tornado"


def test_wait_on_concurrent_future_from_a_thread():
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert dhaga.wait(pool.submit(lambda: "threaded")) == "threaded"


def test_wait_reraises_and_times_out():
    async def bad():
        raise KeyError("k")

    with pytest.raises(KeyError):
        dhaga.wait(bad())
    with pytest.raises(Timeout):
        dhaga.wait(asyncio.sleep(10), timeout=0.01)


def test_wait_rejects_non_awaitables():
    with pytest.raises(TypeError, match="future, coroutine or awaitable"):
        dhaga.wait(42)


def test_coroutine_awaits_dhaga_result_and_exception():
    def blocking(x):
        dhaga.sleep(0.001)
        if x < 0:
            raise ValueError("negative")
        return x * 10

    async def main():
        ok = await dhaga.spawn(blocking, 4)
        try:
            await dhaga.spawn(blocking, -1)
        except ValueError as e:
            return ok, str(e)

    assert dhaga.wait(main()) == (40, "negative")


def test_await_already_finished_dhaga():
    d = dhaga.spawn(lambda: "early")
    d.join()

    async def main():
        return await d

    assert dhaga.wait(main()) == "early"


def test_green_from_async_returns_awaitable_dhaga():
    @dhaga.green
    def fetch(x):
        dhaga.sleep(0.001)
        return x + 1

    async def main():
        pending = fetch(1)
        assert isinstance(pending, dhaga.Dhaga)
        return await pending

    assert dhaga.wait(main()) == 2
    # From blocking code it is a plain call.
    assert fetch(10) == 11
    assert dhaga.run(fetch, 20) == 21
    assert fetch.__name__ == "fetch"


def test_asyncio_run_with_dhagas_inside():
    """A plain asyncio program can spawn dhagas on its own loop and await them."""

    def blocking():
        dhaga.sleep(0.001)
        return dhaga.current() is not None

    async def main():
        return await asyncio.gather(*(dhaga.spawn(blocking) for _ in range(10)))

    assert asyncio.run(main()) == [True] * 10
    # Afterwards, top-level blocking works again on this thread's own loop.
    assert dhaga.run(blocking) is True


def _free_listener():
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    return sock


def test_tornado_request_handler_with_green_method_serves_real_http():
    """A real Tornado server; the handler blocks (sleep, an Event, a coroutine) in a dhaga."""
    dhaga.get_scheduler()  # the loop Tornado's objects below will use
    gate = Event()

    class Handler(tornado.web.RequestHandler):
        @dhaga.green
        def get(self, name):
            dhaga.sleep(0.001)
            gate.wait(5)  # blocking style, set by another dhaga

            async def lookup():
                await asyncio.sleep(0)
                return name.upper()

            self.write({"hello": dhaga.wait(lookup()), "in_dhaga": dhaga.current() is not None})

    app = tornado.web.Application([(r"/hello/(\w+)", Handler)])
    listener = _free_listener()
    port = listener.getsockname()[1]
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([listener])
    try:
        dhaga.spawn_later(0.01, gate.set)
        client = tornado.httpclient.AsyncHTTPClient()

        async def fetch_all():
            responses = await asyncio.gather(
                *(client.fetch(f"http://127.0.0.1:{port}/hello/u{i}") for i in range(20))
            )
            return [r.body for r in responses]

        bodies = dhaga.wait(fetch_all(), timeout=30)
        assert bodies == [
            f'{{"hello": "U{i}", "in_dhaga": true}}'.encode() for i in range(20)
        ]
    finally:
        server.stop()
        dhaga.wait(server.close_all_connections(), timeout=10)
        client.close()


def test_tornado_ioloop_is_the_schedulers_loop():
    sched = dhaga.get_scheduler()
    ioloop = sched.ioloop
    assert ioloop.asyncio_loop is sched.loop
    fired = []
    ioloop.add_callback(fired.append, 1)
    dhaga.sleep(0)
    dhaga.sleep(0)
    assert fired == [1]
