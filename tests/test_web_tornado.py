"""Tornado with dhagas: @dhaga.green handlers making blocking calls, blocking-style WebSockets."""

from __future__ import annotations

import json

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web
from test_web_server import GreenHTTPConnection, fetch

import dhaga
from dhaga import rpc
from dhaga.sync import Event
from dhaga.web import WebSocketClosed, WebSocketHandler, WSGIServer, websocket_connect

pytestmark = pytest.mark.usefixtures("each_loop")


class Backends:
    """A slow HTTP backend (a dhaga.web WSGI app) and a slow RPC backend, counting overlap."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.http = WSGIServer(self._http_app, ("127.0.0.1", 0))
        self.http.start()
        self.rpc = rpc.Server()
        self.rpc.register("add", self._add)
        self.rpc.listen(("127.0.0.1", 0))
        self.rpc.start()

    def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _http_app(self, env, start_response):
        self._enter()
        try:
            dhaga.sleep(self.delay)
        finally:
            self.in_flight -= 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"user": env["PATH_INFO"][1:]}).encode()]

    def _add(self, a, b):
        self._enter()
        try:
            dhaga.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return a + b

    def stop(self) -> None:
        self.http.stop(timeout=0)
        self.rpc.stop(timeout=0)


def tornado_server(app: tornado.web.Application) -> tuple[tornado.httpserver.HTTPServer, int]:
    dhaga.get_scheduler()  # Tornado objects share the scheduler's loop
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    return server, sock.getsockname()[1]


def test_a_green_handler_makes_blocking_http_and_rpc_calls_concurrently():
    backends = Backends(delay=0.2)
    http_host, http_port = backends.http.address[:2]
    rpc_client = rpc.Client(backends.rpc.address)

    class Profile(tornado.web.RequestHandler):
        @dhaga.green
        def get(self, user):
            # a blocking HTTP call (http.client on a dhaga socket) ...
            conn = GreenHTTPConnection(http_host, http_port, timeout=10)
            try:
                status, body, _ = fetch(conn, f"/{user}")
            finally:
                conn.close()
            # ... a blocking RPC call ...
            total = rpc_client.call("add", len(user), 1000, timeout=10)
            # ... and Tornado's own client, awaited in blocking style
            again = dhaga.wait(tornado.httpclient.AsyncHTTPClient().fetch(
                f"http://{http_host}:{http_port}/{user}-again"), timeout=10)
            self.write({"user": json.loads(body)["user"], "total": total,
                        "again": json.loads(again.body)["user"]})

    server, port = tornado_server(tornado.web.Application([(r"/profile/(\w+)", Profile)]))

    def client(i):
        conn = GreenHTTPConnection("127.0.0.1", port, timeout=20)
        try:
            status, body, _ = fetch(conn, f"/profile/u{i}")
        finally:
            conn.close()
        assert status == 200
        return json.loads(body)

    try:
        with dhaga.Group() as g:
            ds = [g.spawn(client, i) for i in range(30)]
        replies = [d.result() for d in ds]
    finally:
        server.stop()
        rpc_client.close()
        backends.stop()
    assert replies == [{"user": f"u{i}", "total": len(f"u{i}") + 1000, "again": f"u{i}-again"}
                       for i in range(30)]
    # the handlers overlapped: each call parked its own dhaga, not the loop
    assert backends.max_in_flight >= 25


class Echo(WebSocketHandler):
    finished: list = []

    def handle(self, ws, room):
        try:
            ws.send(f"welcome to {room}")
            for message in ws:
                if message == "slow":
                    dhaga.sleep(0.05)  # a blocking call: other connections keep going
                    ws.send("done sleeping")
                elif isinstance(message, bytes):
                    ws.send(message[::-1], binary=True)
                elif message == "bye":
                    ws.close(1000, "asked to")
                    return
                else:
                    ws.send(message.upper())
        finally:
            Echo.finished.append(room)


def ws_server():
    return tornado_server(tornado.web.Application([(r"/ws/(\w+)", Echo)]))


def test_websockets_in_blocking_style():
    Echo.finished = []
    server, port = ws_server()
    try:
        ws = websocket_connect(f"ws://127.0.0.1:{port}/ws/lobby", timeout=10)
        assert ws.receive(timeout=10) == "welcome to lobby"
        ws.send("hello")
        assert ws.receive(timeout=10) == "HELLO"
        ws.send(b"\x00\x01\x02", binary=True)
        assert ws.receive(timeout=10) == b"\x02\x01\x00"
        ws.send("bye")
        with pytest.raises(WebSocketClosed) as info:
            ws.receive(timeout=10)
        assert info.value.code == 1000 and info.value.reason == "asked to"
        with pytest.raises(WebSocketClosed):
            ws.send("too late")
        assert Echo.finished == ["lobby"]
    finally:
        server.stop()


def test_a_receive_that_times_out_loses_nothing():
    Echo.finished = []
    server, port = ws_server()
    try:
        ws = websocket_connect(f"ws://127.0.0.1:{port}/ws/t", timeout=10)
        assert ws.receive(timeout=10) == "welcome to t"
        with pytest.raises(dhaga.Timeout):
            ws.receive(timeout=0.01)  # nothing yet
        ws.send("slow")
        with pytest.raises(dhaga.Timeout):
            ws.receive(timeout=0.001)  # the reply is 50 ms away
        assert ws.receive(timeout=10) == "done sleeping"
        ws.close()
    finally:
        server.stop()


def test_many_websockets_are_served_at_once_and_the_server_sees_client_closes():
    Echo.finished = []
    server, port = ws_server()
    closed = Event()

    def one(i):
        with websocket_connect(f"ws://127.0.0.1:{port}/ws/r{i}", timeout=10) as ws:
            assert ws.receive(timeout=10) == f"welcome to r{i}"
            ws.send("slow")
            assert ws.receive(timeout=10) == "done sleeping"
            ws.send(f"m{i}")
            return ws.receive(timeout=10)

    try:
        with dhaga.Group() as g:
            ds = [g.spawn(one, i) for i in range(50)]
        assert [d.result() for d in ds] == [f"M{i}" for i in range(50)]

        def all_finished():
            while len(Echo.finished) < 50:
                dhaga.sleep(0.01)
            closed.set()

        dhaga.spawn(all_finished)
        assert closed.wait(timeout=10)  # every server-side handle() saw its client close
        assert sorted(Echo.finished) == sorted(f"r{i}" for i in range(50))
    finally:
        server.stop()


def test_a_failing_handle_closes_with_1011(caplog):
    class Broken(WebSocketHandler):
        def handle(self, ws):
            raise RuntimeError("handler bug")

    server, port = tornado_server(tornado.web.Application([(r"/broken", Broken)]))
    try:
        ws = websocket_connect(f"ws://127.0.0.1:{port}/broken", timeout=10)
        with pytest.raises(WebSocketClosed) as info:
            ws.receive(timeout=10)
        assert info.value.code == 1011
    finally:
        server.stop()
    assert "handler bug" in caplog.text
